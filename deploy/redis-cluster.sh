#!/usr/bin/env bash
# A local Redis Cluster on loopback for tests and local runs: P primaries with R replicas each.
#
#   deploy/redis-cluster.sh start DIR [options] [-- redis-server args…]
#       --primaries P       primaries (default 3; redis-cli --cluster create needs at least 3)
#       --replicas R        replicas of each primary (default 1)
#       --ports A,B,…       the P×(1+R) client ports, or
#       --base-port N       N, N+1, … (default 7001)
#       --bus-ports A,B,…   the cluster bus ports (default: each port + 10000)
#       --node-timeout MS   cluster-node-timeout (default 2000: failover within seconds)
#       --timeout S         give up when the cluster is not ready after S seconds (default 60)
#       --watch-stdin       stay in the foreground once ready and own the nodes: stop them
#                           all when stdin closes (also when the process holding it dies),
#                           on a `stop` line or on SIGINT/SIGTERM. A `restart PORT` line
#                           starts that node again and answers `restarted port=P pid=N` or
#                           `failed port=P <why>` on stdout. Without it the script exits
#                           once ready and the nodes run on until `stop DIR`.
#       redis-server args after `--` come last (persistence: `-- --appendonly yes
#       --appendfsync always`; the default is none: `--save "" --appendonly no`).
#   deploy/redis-cluster.sh stop DIR           SIGKILL every node of DIR (pidfiles), remove its files
#   deploy/redis-cluster.sh restart DIR PORT   start a killed node again (same port, files, config)
#
# Each node runs `redis-server --cluster-enabled yes --cluster-config-file nodes-PORT.conf …`
# with its files in DIR (redis-PORT.{pid,log,args}, nodes-PORT.conf, dump-PORT.rdb,
# appendonlydir-PORT). `start` creates the cluster with `redis-cli --cluster create` and waits
# until every node reports cluster_state:ok with all 16384 slots, every node sees the same
# primaries, replicas and slots with no node failing, and every replica's link is up. Then it
# prints one line to stdout (nothing else goes there):
#
#   ready ports=7001,…,7006 pids=…,… primaries=7001,7002,7003 replicas=7004,7005,7006 \
#     url=redis-cluster://127.0.0.1:7001?node=127.0.0.1:7002&node=… dir=DIR
#
# (`pids` in the order of `ports`.) Progress and errors go to stderr. Exit status: 0 ready
# (or stopped, with --watch-stdin); 1 failed; 2 bad usage; 3 a port was taken (pick others).
# A failed start kills every node it started and keeps the logs in DIR.
set -uo pipefail

HOST=127.0.0.1
SELF=${0##*/}
# Whether the nodes are up and the ready line printed (the exit trap cleans up otherwise).
READY=0
REASON=

say() { echo "$SELF: $*" >&2; }
# A line to stdout; fails, rather than killing us with SIGPIPE, when the reader is gone
# (the nodes must then be stopped, not orphaned).
reply() {
  local status=0
  trap '' PIPE
  echo "$*" 2>/dev/null || status=1
  trap - PIPE
  return "$status"
}
usage() {
  say "$*"
  sed -n '2,22s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

# Whether PID is a live (not zombie) process; /proc is Linux's and so are these tests.
alive() {
  local stat
  [[ -n $1 ]] && read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != [ZX] ]]
}

# Whether PID is a live redis-server (a pidfile may be stale and its pid reused).
is_redis() {
  alive "$1" && [[ $(cat "/proc/$1/comm" 2>/dev/null) == redis-server ]]
}

# redis-cli against one node, bounded (a stopped node must not hang the caller).
rcli() {
  local port=$1
  shift
  timeout 5 redis-cli -h "$HOST" -p "$port" "$@" 2>/dev/null | tr -d '\r'
}

# The last lines of a node's log (without Redis' memory-overcommit warning), indented.
log_tail() {
  local f
  for f in "$DIR/redis-$1.log" "$DIR/redis-$1.out"; do
    [[ -s $f ]] && grep -v 'WARNING Memory overcommit' "$f" | tail -n 5 | sed 's/^/    /' >&2
  done
  return 0
}

# Starts the node on PORT from its recorded arguments and waits until it accepts
# connections. Returns 0, 3 when its port or bus port is taken, 1 otherwise (REASON says why).
start_node() {
  local port=$1 args log offset pid deadline
  if [[ ! -f $DIR/redis-$port.args ]]; then
    REASON="$DIR has no node on port $port"
    return 1
  fi
  if [[ -f $DIR/redis-$port.pid ]] && is_redis "$(<"$DIR/redis-$port.pid")"; then
    REASON="the node on port $port is running (pid $(<"$DIR/redis-$port.pid"))"
    return 1
  fi
  mapfile -t args <"$DIR/redis-$port.args"
  log=$DIR/redis-$port.log
  offset=0
  [[ -f $log ]] && offset=$(stat -c %s "$log")
  redis-server "${args[@]}" </dev/null >>"$DIR/redis-$port.out" 2>&1 &
  pid=$!
  # Out of the job table: bash still reaps it, but prints no "Killed" line for it.
  disown "$pid"
  # Written before redis-server writes it (same pid): no moment without a pidfile.
  echo "$pid" >"$DIR/redis-$port.pid"
  deadline=$((SECONDS + 20))
  while ! tail -c "+$((offset + 1))" "$log" 2>/dev/null | grep -q 'Ready to accept connections'; do
    if ! alive "$pid"; then
      rm -f "$DIR/redis-$port.pid"
      if tail -c "+$((offset + 1))" "$log" 2>/dev/null | grep -q 'Address already in use'; then
        REASON="port $port or its cluster bus port is taken"
        return 3
      fi
      REASON="redis-server on port $port exited during start"
      return 1
    fi
    if ((SECONDS > deadline)); then
      kill -KILL "$pid" 2>/dev/null
      rm -f "$DIR/redis-$port.pid"
      REASON="redis-server on port $port did not accept connections within 20 s"
      return 1
    fi
    sleep 0.05
  done
}

# SIGKILLs every node of DIR that its pidfile names and waits until they are gone.
kill_nodes() {
  local f pid pids=() deadline
  for f in "$DIR"/redis-*.pid; do
    [[ -f $f ]] || continue
    pid=$(<"$f")
    if is_redis "$pid"; then
      kill -KILL "$pid" 2>/dev/null && pids+=("$pid")
    fi
    rm -f "$f"
  done
  deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.02; done
    alive "$pid" && say "redis-server pid $pid is still there after SIGKILL"
  done
  return 0
}

stop_dir() {
  kill_nodes
  rm -f "$DIR"/nodes-*.conf "$DIR"/redis-*.log "$DIR"/redis-*.out "$DIR"/redis-*.args \
    "$DIR"/dump-*.rdb "$DIR"/temp-*.rdb "$DIR"/create.log
  rm -rf "$DIR"/appendonlydir-*
  rmdir "$DIR" 2>/dev/null || true
}

# Checks that the cluster is fully formed; REASON says what is missing when it is not.
cluster_ready() {
  local port info want nodes sig first="" bad roles
  for port in "${PORTS[@]}"; do
    info=$(rcli "$port" CLUSTER INFO)
    for want in cluster_state:ok cluster_slots_assigned:16384 cluster_slots_ok:16384 \
      "cluster_known_nodes:${#PORTS[@]}"; do
      if ! grep -qx "$want" <<<"$info"; then
        REASON="node $port: not $want"
        return 1
      fi
    done
    nodes=$(rcli "$port" CLUSTER NODES)
    # Trouble as this node sees it: a node failing, in handshake, or not connected.
    bad=$(awk '$3 ~ /fail|handshake|noaddr/ || ($3 !~ /myself/ && $8 != "connected") {
      print $2 " " $3 " " $8 }' <<<"$nodes")
    if [[ -n $bad ]]; then
      REASON="node $port sees: ${bad//$'\n'/; }"
      return 1
    fi
    # What every node must agree on: id, port, role, primary and slots of every node.
    sig=$(awk '{ sub(/@.*/, "", $2); sub(/.*:/, "", $2)
      role = $3 ~ /master/ ? "primary" : "replica"; line = $1 " " $2 " " role " " $4
      for (i = 9; i <= NF; i++) if ($i !~ /^\[/) line = line " " $i
      print line }' <<<"$nodes" | sort)
    if [[ -z $first ]]; then
      first=$sig
    elif [[ $sig != "$first" ]]; then
      REASON="nodes ${PORTS[0]} and $port do not agree yet on CLUSTER NODES"
      return 1
    fi
  done
  # P primaries holding slots, R replicas each.
  roles=$(awk -v p="$PRIMARIES" -v r="$REPLICAS" '
    $3 == "primary" && NF > 4 { primaries++; id[$1] = $2 }
    $3 == "replica" { of[$4]++ }
    END { for (i in id) if (of[i] + 0 != r) { print "primary " id[i] " has " of[i] + 0 " replicas"; exit }
          if (primaries != p) print primaries + 0 " primaries hold slots" }' <<<"$first")
  if [[ -n $roles ]]; then
    REASON=$roles
    return 1
  fi
  PRIMARY_PORTS=$(awk '$3 == "primary" { print $2 }' <<<"$first" | sort -n | paste -sd,)
  REPLICA_PORTS=$(awk '$3 == "replica" { print $2 }' <<<"$first" | sort -n | paste -sd,)
  for port in ${REPLICA_PORTS//,/ }; do
    if ! rcli "$port" INFO replication | grep -qx 'master_link_status:up'; then
      REASON="replica $port: replication link not up"
      return 1
    fi
  done
}

# Exit trap of `start`: a start that did not get ready kills what it started.
on_exit() {
  local status=$?
  ((READY)) && return
  ((status == 0)) && status=1
  [[ -n $REASON ]] && say "$REASON"
  kill_nodes
  say "start failed; the nodes it started are stopped, logs kept in $DIR"
  exit "$status"
}

# fail STATUS PORTS WHY: exit with STATUS, showing the log tails of PORTS (comma-separated).
fail() {
  local status=$1 port
  REASON=$3
  say "$REASON"
  for port in ${2//,/ }; do
    if [[ -s $DIR/redis-$port.log || -s $DIR/redis-$port.out ]]; then
      say "node $port log:"
      log_tail "$port"
    fi
  done
  REASON=
  exit "$status"
}

split_ports() { # name list → array of ports, usage error on anything else
  local -n out=$1
  IFS=, read -r -a out <<<"$2"
  local p
  for p in "${out[@]}"; do
    if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then usage "not a port: $p"; fi
  done
}

cmd_start() {
  PRIMARIES=3 REPLICAS=1 NODE_TIMEOUT=2000 TIMEOUT=60 WATCH=0
  local base=7001 ports_arg="" bus_arg="" extra=() n i
  [[ $# -ge 1 && $1 != -* ]] || usage "start: DIR is required"
  DIR=$1
  shift
  while (($#)); do
    case $1 in
      --primaries) PRIMARIES=${2:?}; shift 2 ;;
      --replicas) REPLICAS=${2:?}; shift 2 ;;
      --ports) ports_arg=${2:?}; shift 2 ;;
      --base-port) base=${2:?}; shift 2 ;;
      --bus-ports) bus_arg=${2:?}; shift 2 ;;
      --node-timeout) NODE_TIMEOUT=${2:?}; shift 2 ;;
      --timeout) TIMEOUT=${2:?}; shift 2 ;;
      --watch-stdin) WATCH=1; shift ;;
      --) shift; extra=("$@"); break ;;
      *) usage "start: unknown option $1" ;;
    esac
  done
  for v in PRIMARIES REPLICAS NODE_TIMEOUT TIMEOUT base; do
    [[ ${!v} =~ ^[0-9]+$ ]] || usage "start: ${v,,} must be a number, not '${!v}'"
  done
  ((PRIMARIES >= 3)) || usage "start: a Redis Cluster needs at least 3 primaries (redis-cli --cluster create)"
  n=$((PRIMARIES * (1 + REPLICAS)))
  if [[ -n $ports_arg ]]; then
    split_ports PORTS "$ports_arg"
  else
    PORTS=()
    for ((i = 0; i < n; i++)); do PORTS+=($((base + i))); done
  fi
  ((${#PORTS[@]} == n)) || usage "start: $PRIMARIES primaries × (1 + $REPLICAS) need $n ports, got ${#PORTS[@]}"
  BUS=()
  if [[ -n $bus_arg ]]; then
    split_ports BUS "$bus_arg"
    ((${#BUS[@]} == n)) || usage "start: --bus-ports needs $n ports, got ${#BUS[@]}"
  else
    for i in "${PORTS[@]}"; do
      ((i + 10000 < 65536)) || usage "start: port $i has no bus port (port + 10000 > 65535): use --bus-ports"
      BUS+=($((i + 10000)))
    done
  fi
  for tool in redis-server redis-cli timeout; do
    command -v "$tool" >/dev/null || { say "$tool not found (make deps installs redis-server and redis-cli)"; exit 1; }
  done
  mkdir -p "$DIR" || { say "cannot create $DIR"; exit 1; }
  DIR=$(cd "$DIR" && pwd)
  for i in "${PORTS[@]}"; do
    if [[ -e $DIR/nodes-$i.conf ]]; then
      say "$DIR already holds a node on port $i: stop it first ($SELF stop $DIR) or use another directory"
      exit 1
    fi
  done

  trap on_exit EXIT
  trap 'REASON="interrupted"; exit 1' INT TERM
  local deadline=$((SECONDS + TIMEOUT)) status
  for i in "${!PORTS[@]}"; do
    local p=${PORTS[i]}
    printf '%s\n' --port "$p" --bind "$HOST" --daemonize no \
      --cluster-enabled yes --cluster-config-file "nodes-$p.conf" \
      --cluster-node-timeout "$NODE_TIMEOUT" --cluster-port "${BUS[i]}" \
      --dir "$DIR" --pidfile "$DIR/redis-$p.pid" --logfile "$DIR/redis-$p.log" \
      --dbfilename "dump-$p.rdb" --appenddirname "appendonlydir-$p" \
      --save "" --appendonly no "${extra[@]}" >"$DIR/redis-$p.args"
    start_node "$p"
    status=$?
    ((status == 0)) || fail "$status" "$p" "$REASON"
  done
  say "${#PORTS[@]} nodes up; creating the cluster (redis-cli --cluster create)"
  local addrs=()
  for i in "${PORTS[@]}"; do addrs+=("$HOST:$i"); done
  if ! timeout "$((deadline - SECONDS > 1 ? deadline - SECONDS : 1))" redis-cli --cluster create "${addrs[@]}" \
    --cluster-replicas "$REPLICAS" --cluster-yes </dev/null >"$DIR/create.log" 2>&1; then
    say "redis-cli --cluster create failed:"
    tail -n 15 "$DIR/create.log" | sed 's/^/    /' >&2
    fail 1 "" "cluster not created"
  fi
  until cluster_ready; do
    ((SECONDS < deadline)) || fail 1 "$(IFS=,; echo "${PORTS[*]}")" "cluster not ready after $TIMEOUT s: $REASON"
    sleep 0.1
  done
  REASON=
  local pids=() url="redis-cluster://$HOST:${PORTS[0]}" sep="?"
  for i in "${PORTS[@]}"; do pids+=("$(<"$DIR/redis-$i.pid")"); done
  for i in "${PORTS[@]:1}"; do
    url+="${sep}node=$HOST:$i"
    sep="&"
  done
  local IFS=,
  if ! reply "ready ports=${PORTS[*]} pids=${pids[*]} primaries=$PRIMARY_PORTS replicas=$REPLICA_PORTS url=$url dir=$DIR"; then
    REASON="nobody reads the ready line (the caller is gone)"
    exit 1
  fi
  unset IFS
  READY=1
  trap - EXIT INT TERM
  ((WATCH)) && watch_stdin
  exit 0
}

# --watch-stdin: serve `restart PORT` lines until `stop`, EOF or a signal, then stop DIR.
watch_stdin() {
  local line port status
  trap 'stop_dir; exit 0' INT TERM
  say "ready; stops when stdin closes"
  while IFS= read -r line; do
    case $line in
      stop) break ;;
      "restart "*)
        port=${line#restart }
        start_node "$port"
        status=$?
        if ((status == 0)); then
          reply "restarted port=$port pid=$(<"$DIR/redis-$port.pid")"
        else
          reply "failed port=$port $REASON"
        fi
        ;;
      *) reply "failed unknown command: $line" ;;
    esac
  done
  stop_dir
  say "stopped"
}

cmd_stop() {
  [[ $# -eq 1 ]] || usage "stop: DIR is required"
  DIR=$1
  [[ -d $DIR ]] || { say "no such directory: $DIR"; exit 1; }
  stop_dir
}

cmd_restart() {
  [[ $# -eq 2 ]] || usage "restart: DIR and PORT are required"
  DIR=$(cd "$1" 2>/dev/null && pwd) || { say "no such directory: $1"; exit 1; }
  PORTS=("$2")
  start_node "$2"
  local status=$?
  ((status == 0)) || fail "$status" "$2" "$REASON"
  echo "restarted port=$2 pid=$(<"$DIR/redis-$2.pid")"
}

case ${1:-} in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  restart) shift; cmd_restart "$@" ;;
  -h | --help | help) usage "usage:" ;;
  *) usage "unknown command '${1:-}'" ;;
esac
