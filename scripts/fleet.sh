#!/usr/bin/env bash
# scripts/fleet.sh — a local Parley fleet on loopback: Redis, Cassandra and
# Kafka (started with scripts/redis.sh, cassandra.sh and kafka.sh), two
# logic nodes, two connection nodes and the push notifier, each from its
# file in configs/fleet/.
#
# Usage: scripts/fleet.sh <command>
#   start    build bin/parley, start the services, then the tiers; waits until
#            every node answers /readyz
#   stop     stop the tiers (TERM, so connection nodes drain), then the services
#   restart  stop and start the tiers only; Redis, Cassandra and Kafka keep
#            running (and Cassandra its warmed-up JIT), e.g. to measure two
#            builds side by side with PARLEY_FLEET_BIN; it does not build:
#            without PARLEY_FLEET_BIN it runs the bin/parley there is
#   status   one line per process: running or not, PID, RSS
#   logs     the last lines of every tier's log
#
# Endpoints once started:
#   WebSocket   ws://127.0.0.1:18081/ws  ws://127.0.0.1:18082/ws
#   HTTP API    http://127.0.0.1:18181   http://127.0.0.1:18182  (the web client
#               too, after `make web`)
#   /metrics    http://127.0.0.1:18191   http://127.0.0.1:18192  (logic admin
#               listeners) and connsrv's http://127.0.0.1:18281 / 18282
#   Redis 16379, Cassandra 127.0.0.1:19042 (with PARLEY_CASSANDRA_NODES=3:
#   127.0.0.2-4:19042), Kafka 19092
#
# Environment: PARLEY_FLEET_DIR (default /tmp/parley-fleet) holds the PID
# files, logs and the links' certificates (certs/: a CA and one
# certificate per node, made once with `parley certs`; every link runs on
# mutual TLS 1.3); the services keep their own defaults (see their scripts).
# PARLEY_CASSANDRA_NODES=3 runs the store on a three-node Cassandra cluster
# instead of one node: the logic nodes and the notifier get its hosts
# (`cassandra.sh env`) and create the keyspace with replication factor 3, so
# the fleet keeps working with one Cassandra node stopped
# (`PARLEY_CASSANDRA_NODES=3 PARLEY_CASSANDRA_DIR=$PARLEY_FLEET_DIR/cassandra
# scripts/cassandra.sh stop-node 2`).
# PARLEY_FLEET_BIN runs the tiers from that binary instead of building
# bin/parley (another build, for an A/B run with `restart`; a build from
# before `parley certs` needs PARLEY_FLEET_LINK_TLS=0, which runs the
# loopback links on the link secret alone, and so should its A/B partner).
# PARLEY_FLEET_STORE adds store settings (space-separated key=value, given
# as -set to the logic nodes and the notifier), e.g. to measure the
# per-message LWT mode beside the default lease mode (a keyspace keeps the
# mode it was created with, so give it its own):
#   PARLEY_FLEET_STORE="store.scylla.sequencing=lwt store.scylla.keyspace=parley_lwt"
# PARLEY_FLEET_LOGIC does the same for logic settings, given to the logic
# nodes only, e.g. PARLEY_FLEET_LOGIC="logic.marks_interval=5s".
set -euo pipefail
# A relative PARLEY_FLEET_BIN is the caller's, not the repository's.
if [ -n "${PARLEY_FLEET_BIN:-}" ] && [ "${PARLEY_FLEET_BIN#/}" = "$PARLEY_FLEET_BIN" ]; then
  PARLEY_FLEET_BIN="$PWD/$PARLEY_FLEET_BIN"
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DIR="${PARLEY_FLEET_DIR:-/tmp/parley-fleet}"
BIN="${PARLEY_FLEET_BIN:-$ROOT/bin/parley}"
export PARLEY_REDIS_DIR="$DIR/redis" PARLEY_KAFKA_DIR="$DIR/kafka" PARLEY_CASSANDRA_DIR="$DIR/cassandra"
# One node: 1g heap, 256m resident at start. A cluster keeps cassandra.sh's
# per-node defaults (512m, 256m at start).
if [ "${PARLEY_CASSANDRA_NODES:-1}" = 1 ]; then
  export PARLEY_CASSANDRA_HEAP="${PARLEY_CASSANDRA_HEAP:-1g}" PARLEY_CASSANDRA_HEAP_MIN="${PARLEY_CASSANDRA_HEAP_MIN:-256m}"
fi

# name, command, config, readiness URL
TIERS=(
  "logic-1 logic configs/fleet/logic-1.yaml http://127.0.0.1:18181/readyz"
  "logic-2 logic configs/fleet/logic-2.yaml http://127.0.0.1:18182/readyz"
  "connsrv-1 connsrv configs/fleet/connsrv-1.yaml http://127.0.0.1:18281/readyz"
  "connsrv-2 connsrv configs/fleet/connsrv-2.yaml http://127.0.0.1:18282/readyz"
  "notifier notifier configs/fleet/notifier.yaml http://127.0.0.1:18381/readyz"
)

log() { echo "fleet.sh: $*" >&2; }
die() { log "$*"; exit 1; }

running() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

wait_ready() { # name url seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if curl -fsS -o /dev/null --max-time 1 "$2" 2>/dev/null; then return 0; fi
    running "$1" || { tail -20 "$DIR/$1.log" >&2; die "$1 exited; log $DIR/$1.log"; }
    sleep 0.1
  done
  tail -20 "$DIR/$1.log" >&2
  die "$1 not ready after $3s; log $DIR/$1.log"
}

start() {
  mkdir -p "$DIR"
  command -v curl >/dev/null || die "curl is needed (apt-get install -y curl)"
  if [ -n "${PARLEY_FLEET_BIN:-}" ]; then
    [ -x "$BIN" ] || die "PARLEY_FLEET_BIN=$BIN is not an executable"
  else
    log "building $BIN"
    go build -o "$BIN" ./cmd/parley
  fi
  bash scripts/redis.sh start
  bash scripts/cassandra.sh start
  bash scripts/kafka.sh start
  start_tiers
}

start_tiers() {
  # The configs name one node (127.0.0.1:19042); point the store users at
  # whatever cassandra.sh runs, one node or a cluster.
  local hosts
  hosts=$(bash scripts/cassandra.sh env | sed -n 's/^PARLEY_CQL_HOSTS=//p')
  [ -n "$hosts" ] || die "cassandra.sh env printed no PARLEY_CQL_HOSTS"
  local -a store=(-set "store.scylla.hosts=$hosts")
  if [ "${PARLEY_CASSANDRA_NODES:-1}" != 1 ]; then
    store+=(-set "store.scylla.replication.factor=${PARLEY_CASSANDRA_NODES}")
  fi
  local kv
  for kv in ${PARLEY_FLEET_STORE:-}; do
    case "$kv" in
      store.*=*) store+=(-set "$kv") ;;
      *) die "PARLEY_FLEET_STORE: '$kv' is not a store.<key>=<value> setting" ;;
    esac
  done
  local -a logicset=()
  for kv in ${PARLEY_FLEET_LOGIC:-}; do
    case "$kv" in
      logic.*=*) logicset+=(-set "$kv") ;;
      *) die "PARLEY_FLEET_LOGIC: '$kv' is not a logic.<key>=<value> setting" ;;
    esac
  done
  [ "${PARLEY_FLEET_LINK_TLS:-1}" = 0 ] || link_certs
  local t name cmd cfg url
  local -a args
  for t in "${TIERS[@]}"; do
    read -r name cmd cfg url <<<"$t"
    if running "$name"; then log "$name already running (pid $(cat "$DIR/$name.pid"))"; continue; fi
    args=()
    # connsrv has no store section (an unknown setting is an error).
    [ "$cmd" = connsrv ] || args=("${store[@]}")
    [ "${PARLEY_FLEET_LINK_TLS:-1}" = 0 ] || case "$cmd" in
      logic|connsrv) args+=(-set "$cmd.link_tls.cert_file=$CERTS/$name.crt" -set "$cmd.link_tls.key_file=$CERTS/$name.key"
        -set "$cmd.link_tls.ca_file=$CERTS/ca.crt" -set "$cmd.link_tls.deny_file=$CERTS/deny.txt") ;;
    esac
    if [ "$cmd" = logic ] && [ "${PARLEY_FLEET_LINK_TLS:-1}" != 0 ]; then
      args+=(-set "logic.link_tls.client_ca_file=$CERTS/ca.crt")
    fi
    [ "$cmd" = logic ] && args+=("${logicset[@]}")
    "$BIN" "$cmd" -config "$cfg" "${args[@]}" >"$DIR/$name.log" 2>&1 &
    echo $! >"$DIR/$name.pid"
    # The first logic node creates the keyspace: wait for it before the next.
    wait_ready "$name" "$url" 120
    log "$name up (pid $(cat "$DIR/$name.pid"))"
  done
  log "fleet up: ws://127.0.0.1:18081/ws and ws://127.0.0.1:18082/ws"
  # A fleet has no development tokens: mint them with the fleet's secret.
  log "web client: http://127.0.0.1:18181/?ws=ws://127.0.0.1:18081/ws#token=\$(bin/parley token -config configs/fleet/logic-1.yaml -user alice -device web)"
  log "try: bin/parley chat -url ws://127.0.0.1:18081/ws -http http://127.0.0.1:18181 -token \"\$(bin/parley token -config configs/fleet/logic-1.yaml -user alice)\""
}

# link_certs makes the fleet's link CA and a certificate per node in
# $DIR/certs (once; `parley certs`, docs/tls.md): every tier and peer link
# of the local fleet runs on mutual TLS 1.3, as a production fleet's must.
CERTS="$DIR/certs"
link_certs() {
  local n
  [ -f "$CERTS/ca.crt" ] || "$BIN" certs init -dir "$CERTS" -days 3650 >/dev/null || die "cannot make the link CA in $CERTS"
  for n in logic-1 logic-2 connsrv-1 connsrv-2; do
    [ -f "$CERTS/$n.crt" ] || "$BIN" certs issue -dir "$CERTS" -name "$n" -host 127.0.0.1,localhost -days 3650 >/dev/null ||
      die "cannot issue the link certificate of $n in $CERTS"
  done
}

stop_pid() { # name
  local pid i
  running "$1" || { rm -f "$DIR/$1.pid"; return 0; }
  pid=$(cat "$DIR/$1.pid")
  kill -TERM "$pid"
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$DIR/$1.pid"
  log "$1 stopped"
}

stop_tiers() {
  local i name
  # Connection nodes first (their clients reconnect elsewhere), then the rest.
  for ((i = ${#TIERS[@]} - 1; i >= 0; i--)); do
    read -r name _ <<<"${TIERS[$i]}"
    stop_pid "$name"
  done
}

restart() {
  stop_tiers
  [ -x "$BIN" ] || die "$BIN is missing: build it (make build) or set PARLEY_FLEET_BIN"
  start_tiers
}

stop() {
  stop_tiers
  bash scripts/kafka.sh stop || true
  bash scripts/cassandra.sh stop || true
  bash scripts/redis.sh stop || true
}

status() {
  local t name rc=0
  for t in "${TIERS[@]}"; do
    read -r name _ <<<"$t"
    if running "$name"; then
      echo "$name running pid $(cat "$DIR/$name.pid") rss $(($(awk '/VmRSS/ {print $2}' "/proc/$(cat "$DIR/$name.pid")/status") / 1024)) MiB"
    else
      echo "$name not running"; rc=3
    fi
  done
  bash scripts/redis.sh status || rc=3
  bash scripts/cassandra.sh status || rc=3
  bash scripts/kafka.sh status || rc=3
  return $rc
}

logs() {
  local t name
  for t in "${TIERS[@]}"; do
    read -r name _ <<<"$t"
    echo "== $name ($DIR/$name.log)"
    tail -n 20 "$DIR/$name.log" 2>/dev/null || true
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) restart ;;
  status) status ;;
  logs) logs ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
