#!/usr/bin/env bash
# A local Switchboard cluster: Redis and three gateway nodes on loopback.
#   public  ws://127.0.0.1:8081/ws  :8082  :8083
#   internal http://127.0.0.1:9091   :9092  :9093
#   REDIS=single (default): one redis-server on 127.0.0.1:REDIS_PORT (6390)
#   REDIS=cluster: a Redis Cluster from deploy/redis-cluster.sh, REDIS_PRIMARIES (3) primaries
#     with REDIS_REPLICAS (1) replicas each on REDIS_CLUSTER_PORT (7001) and up (7001-7006),
#     cluster bus ports + 10000; the nodes get --redis-url redis-cluster://127.0.0.1:7001?node=…
# Usage: [REDIS=cluster] deploy/local-cluster.sh [path/to/switchboard]   (Ctrl-C stops everything)
# Needs SWITCHBOARD_JWT_SECRET and SWITCHBOARD_API_KEY in the environment (make cluster sets them).
set -euo pipefail
BIN=${1:-./target/release/switchboard}
HERE=$(cd "$(dirname "$0")" && pwd)
REDIS=${REDIS:-single}
REDIS_PORT=${REDIS_PORT:-6390}
REDIS_CLUSTER_PORT=${REDIS_CLUSTER_PORT:-7001}
REDIS_PRIMARIES=${REDIS_PRIMARIES:-3}
REDIS_REPLICAS=${REDIS_REPLICAS:-1}
DIR=$(mktemp -d)
pids=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

case $REDIS in
  single)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" \
      --logfile "$DIR/redis.log" &
    pids+=($!)
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    where="redis on 127.0.0.1:$REDIS_PORT"
    ;;
  cluster)
    # The launcher owns the Redis nodes until its stdin closes or it gets SIGTERM (cleanup).
    coproc REDIS_CLUSTER { exec "$HERE/redis-cluster.sh" start "$DIR/redis-cluster" \
      --primaries "$REDIS_PRIMARIES" --replicas "$REDIS_REPLICAS" \
      --base-port "$REDIS_CLUSTER_PORT" --watch-stdin; }
    pids+=("$REDIS_CLUSTER_PID")
    if ! read -r ready <&"${REDIS_CLUSTER[0]}" || [[ $ready != "ready "* ]]; then
      echo "the Redis Cluster did not start (see the lines above)" >&2
      exit 1
    fi
    REDIS_URL=${ready##* url=}
    REDIS_URL=${REDIS_URL%% *}
    where="Redis Cluster $REDIS_URL"
    ;;
  *)
    echo "REDIS must be single or cluster, not '$REDIS'" >&2
    exit 64
    ;;
esac

nodes=()
for i in 1 2 3; do
  "$BIN" serve --listen "127.0.0.1:808$i" --admin-listen "127.0.0.1:909$i" \
    --redis-url "$REDIS_URL" --node-id "node-$i" \
    --history 'room:*=100/3600' > >(sed -u "s/^/[node-$i] /") 2>&1 &
  pids+=($!)
  nodes+=($!)
done
echo "$where; nodes on 8081-8083 (public) and 9091-9093 (internal). Ctrl-C to stop."
# Until Ctrl-C, or until every node has exited (then Redis is stopped too).
status=0
wait "${nodes[@]}" || status=$?
echo "the nodes exited (status $status); stopping Redis" >&2
exit "$status"
