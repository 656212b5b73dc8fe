#!/usr/bin/env bash
# scripts/fleet-ladder.sh — the local fleet's throughput ladder: open-loop
# 1-on-1 load across both connection nodes (cross-node pairs) at several
# rates, with the CPU each kind of process spent per delivered message.
#
# Usage: scripts/fleet-ladder.sh [rate ...]        (default 300 1000 2000 3000 5000)
#
# Needs a running local fleet (scripts/fleet.sh start), bin/parley and jq.
# For every rate it runs
#   bin/parley loadtest -config configs/fleet/connsrv-1.yaml \
#     -url ws://127.0.0.1:18081/ws,ws://127.0.0.1:18082/ws \
#     -pairs $PAIRS -rate R -duration $DURATION -warmup $WARMUP -body-size $BODY_SIZE -json \
#     -watch-pids cassandra-1=PID,...,logic-1=PID,...
# and prints one markdown table row: sent and delivered rate,
# send-to-deliver p50/p99, lost and unacknowledged sends, and the CPU
# milliseconds per delivered message (over the measured window, from
# /proc) of all Cassandra nodes, both logic nodes, both connection nodes,
# Redis, Kafka and the load generator; and, over the whole run (its
# connects and warm-up included), Redis commands and Kafka events published
# per delivered message (Redis INFO commandstats, the logic nodes'
# parley_events_published_total).
#
# Every step runs with new users and a WARMUP (15s) of sending before
# the measured window, on the same connections: the first use of 1,000
# new chats at once (a chat row and a fence each) falls in the warm-up, and
# the window measures the steady state of existing chats.
#
# Environment: PAIRS (1000), DURATION (20s), WARMUP (15s), BODY_SIZE (100 bytes, the
# seed's average message), PARLEY_FLEET_DIR
# (/tmp/parley-fleet), JSON_DIR (keep each run's JSON report there). To
# measure another build's servers, start that build's fleet (its own
# scripts/fleet.sh, same ports) and point PARLEY_FLEET_DIR at it; the load
# generator stays this build's bin/parley.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DIR="${PARLEY_FLEET_DIR:-/tmp/parley-fleet}"
PAIRS="${PAIRS:-1000}"
DURATION="${DURATION:-20s}"
BODY_SIZE="${BODY_SIZE:-100}"
WARMUP="${WARMUP:-15s}"
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(300 1000 2000 3000 5000)
BIN="$ROOT/bin/parley"
[ -x "$BIN" ] || { echo "fleet-ladder.sh: build bin/parley first (make build)" >&2; exit 1; }
command -v jq >/dev/null || { echo "fleet-ladder.sh: needs jq (apt-get install -y jq)" >&2; exit 1; }

# watch lists name=pid for every process of the fleet that runs.
watch() {
  local f n out=""
  for f in "$DIR"/cassandra/cassandra.pid "$DIR"/cassandra/node*/cassandra.pid; do
    [ -r "$f" ] || continue
    n=$(basename "$(dirname "$f")")
    [ "$n" = cassandra ] && n=1 || n=${n#node}
    out="$out,cassandra-$n=$(cat "$f")"
  done
  for n in logic-1 logic-2 connsrv-1 connsrv-2; do
    [ -r "$DIR/$n.pid" ] && out="$out,$n=$(cat "$DIR/$n.pid")"
  done
  [ -r "$DIR/redis/redis.pid" ] && out="$out,redis=$(cat "$DIR/redis/redis.pid")"
  [ -r "$DIR/kafka/kafka.pid" ] && out="$out,kafka=$(cat "$DIR/kafka/kafka.pid")"
  echo "${out#,}"
}

WATCH=$(watch)
echo "fleet-ladder.sh: watching $WATCH" >&2
# redis_calls prints the commands Redis has run since it started.
redis_calls() {
  redis-cli -p "${PARLEY_REDIS_PORT:-16379}" info commandstats 2>/dev/null |
    awk -F'[=,:]' '/^cmdstat_/ { n += $3 } END { print n + 0 }'
}
# events prints the push events both logic nodes have published.
events() {
  local p n=0 v
  for p in 18191 18192; do   # the logic nodes' admin listeners
    v=$(curl -fsS "http://127.0.0.1:$p/metrics" 2>/dev/null | awk '$1 == "parley_events_published_total" { print $2 }')
    n=$((n + ${v:-0}))
  done
  echo "$n"
}

echo "| rate | sent/s | delivered/s | p50 ms | p99 ms | lost | unacked | CPU ms/msg: cassandra | logic | connsrv | redis | kafka | generator | redis cmds/msg | events/msg |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for rate in "${RATES[@]}"; do
  out=$(mktemp)
  r0=$(redis_calls) e0=$(events)
  "$BIN" loadtest -config configs/fleet/connsrv-1.yaml -url ws://127.0.0.1:18081/ws,ws://127.0.0.1:18082/ws \
    -pairs "$PAIRS" -rate "$rate" -duration "$DURATION" -body-size "$BODY_SIZE" -warmup "$WARMUP" -json -watch-pids "$WATCH" >"$out" 2>"$out.err" ||
    { cat "$out.err" >&2; echo "fleet-ladder.sh: loadtest failed at $rate msg/s" >&2; exit 1; }
  r1=$(redis_calls) e1=$(events)
  [ -n "${JSON_DIR:-}" ] && { mkdir -p "$JSON_DIR"; cp "$out" "$JSON_DIR/ladder-$rate.json"; }
  # ms per delivery of a group of watched processes (by name prefix).
  cpu() { jq -r --arg p "$1" '[.process_cpu[]? | select(.name | startswith($p)) | .us_per_delivery] | if length == 0 then "-" else (add / 1000 * 1000 | round / 1000) end' "$out"; }
  delivered=$(jq -r '.delivered' "$out")
  per() { awk -v a="$1" -v d="$delivered" 'BEGIN { if (d > 0) printf "%.2f", a / d; else print "-" }'; }
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$rate" \
    "$(jq -r '.sent_rate | floor' "$out")" "$(jq -r '.deliver_rate | floor' "$out")" \
    "$(jq -r '.send_to_deliver.p50_ms * 10 | round / 10' "$out")" "$(jq -r '.send_to_deliver.p99_ms * 10 | round / 10' "$out")" \
    "$(jq -r '.lost' "$out")" "$(jq -r '.unacked' "$out")" \
    "$(cpu cassandra)" "$(cpu logic)" "$(cpu connsrv)" "$(cpu redis)" "$(cpu kafka)" \
    "$(jq -r '.generator_cpu.us_per_delivery / 1000 * 1000 | round / 1000' "$out")" \
    "$(per $((r1 - r0)))" "$(per $((e1 - e0)))"
  rm -f "$out" "$out.err"
done
