#!/usr/bin/env bash
# Build the Sockudo peer (Rust Pusher-protocol server from crates.io) into a cache directory
# OUTSIDE the repository, so later runs reuse it:
#     ${SOCKUDO_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard-peers/sockudo}/bin/sockudo
#
#   loadtest/peers/build-sockudo.sh            # build if missing (no-op when the pinned version is there)
#   SOCKUDO_JOBS=1 NICE=19 loadtest/peers/build-sockudo.sh   # low priority, one rustc at a time
#   loadtest/peers/build-sockudo.sh --print-bin # print the binary path and exit
#
# Pinned: sockudo 5.2.0 with its default features (local, v2, opentelemetry) plus `redis`
# (the Redis horizontal adapter, cache, queue and rate limiter). `--locked` uses the crate's
# own Cargo.lock. Needs: cargo (rust >= 1.95), cc, make, perl, cmake and protoc (installed here with
# apt-get when missing).
set -euo pipefail

SOCKUDO_VERSION="5.2.0"
SOCKUDO_FEATURES="redis"
ROOT="${SOCKUDO_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard-peers/sockudo}"
BIN="$ROOT/bin/sockudo"
STAMP="$ROOT/.built-$SOCKUDO_VERSION-$SOCKUDO_FEATURES"

if [[ "${1:-}" == "--print-bin" ]]; then
    echo "$BIN"
    exit 0
fi

if [[ -x "$BIN" && -f "$STAMP" ]]; then
    echo "sockudo $SOCKUDO_VERSION already built: $BIN"
    exit 0
fi

CARGO="${CARGO:-cargo}"
command -v "$CARGO" >/dev/null || { echo "cargo not found" >&2; exit 2; }
# Build tools the dependency tree needs: cmake (aws-lc), protoc (metrics-exporter-tcp's prost-build).
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
if (( ${#missing[@]} )); then
    echo "installing ${missing[*]} (apt-get)" >&2
    SUDO=""; [[ "$(id -u)" != 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

mkdir -p "$ROOT"
# A separate target dir in the cache, so an interrupted build resumes where it stopped.
export CARGO_TARGET_DIR="$ROOT/target"
start=$(date +%s)
nice -n "${NICE:-10}" "$CARGO" install sockudo \
    --locked \
    --version "=$SOCKUDO_VERSION" \
    --features "$SOCKUDO_FEATURES" \
    --root "$ROOT" \
    -j "${SOCKUDO_JOBS:-$(nproc)}"
end=$(date +%s)
touch "$STAMP"
echo "sockudo $SOCKUDO_VERSION built in $((end - start)) s: $BIN"
