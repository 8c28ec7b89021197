#!/usr/bin/env bash
# Build the release gateway of a given git revision for the benchmark's "before" column,
# without a git worktree: `git archive REV` is unpacked into target/bench-baseline/REV/src and
# built there with its own target directory (cached: a second call only prints the path).
#
#   tools/bench/build-baseline.sh 5fa1693         # prints the binary's path on stdout
#   make bench BENCH_BASELINE=5fa1693                # the same, called by bench.py
#
# By hand, anywhere: git archive 5fa1693 | tar -x -C /tmp/base && \
#   (cd /tmp/base && cargo build --release --locked -p switchboard-gateway)
# then `make bench BENCH_BASELINE=/tmp/base/target/release/switchboard`.
# Runs cargo with `nice -n 10` (CARGO overrides the cargo command); progress on stderr.
set -euo pipefail

REV=${1:?usage: build-baseline.sh REV}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FULL=$(git -C "$ROOT" rev-parse --verify --quiet "$REV^{commit}") || {
  echo "build-baseline.sh: $REV is not a commit of this repository" >&2
  exit 2
}
SHORT=${FULL:0:12}
DIR="$ROOT/target/bench-baseline/$SHORT"
BIN="$DIR/target/release/switchboard"
if [[ -x "$BIN" && -f "$DIR/.built" ]]; then
  echo "$BIN"
  exit 0
fi
echo "build-baseline.sh: building switchboard at $SHORT in $DIR (release, once)" >&2
rm -rf "$DIR/src"
mkdir -p "$DIR/src"
git -C "$ROOT" archive "$FULL" | tar -x -C "$DIR/src"
(cd "$DIR/src" && CARGO_TARGET_DIR="$DIR/target" nice -n 10 ${CARGO:-cargo} build --release \
  --locked -p switchboard-gateway >&2)
[[ -x "$BIN" ]] || {
  echo "build-baseline.sh: the build did not produce $BIN" >&2
  exit 1
}
touch "$DIR/.built"
echo "$BIN"
