#!/usr/bin/env bash
# A local Switchboard cluster: one redis-server and three gateway nodes on loopback.
#   public  ws://127.0.0.1:8081/ws  :8082  :8083
#   internal http://127.0.0.1:9091   :9092  :9093
# Usage: deploy/local-cluster.sh [path/to/switchboard]   (Ctrl-C stops everything)
# Needs SWITCHBOARD_JWT_SECRET and SWITCHBOARD_API_KEY in the environment (make cluster sets them).
set -euo pipefail
BIN=${1:-./target/release/switchboard}
REDIS_PORT=${REDIS_PORT:-6390}
DIR=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" \
  --logfile "$DIR/redis.log" &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

for i in 1 2 3; do
  "$BIN" serve --listen "127.0.0.1:808$i" --admin-listen "127.0.0.1:909$i" \
    --redis-url "redis://127.0.0.1:$REDIS_PORT/0" --node-id "node-$i" \
    --history 'room:*=100/3600' > >(sed -u "s/^/[node-$i] /") 2>&1 &
  pids+=($!)
done
echo "redis on 127.0.0.1:$REDIS_PORT; nodes on 8081-8083 (public) and 9091-9093 (internal). Ctrl-C to stop."
wait
