#!/usr/bin/env bash
# scripts/haproxy/tlscost.sh — what client TLS through HAProxy costs per
# connection, against plain WebSockets straight to connsrv. For each mode
# and run it starts a fresh standalone node (and, for tls, HAProxy in front
# of it with connsrv.proxy_protocol on), opens N idle connections with
# `parley bench` (wss:// through HAProxy, with the test CA in
# SSL_CERT_FILE; ws:// straight to connsrv for plain), and reads while they
# are held:
#   standalone RSS delta / N       (bench's before/after, -server-pid)
#   HAProxy worker RSS delta / N   (/proc/<worker>/status VmRSS)
#   HAProxy worker CPU / N         (/proc/<worker>/stat utime+stime over the
#                                   ramp: TLS handshakes, upgrades, sync)
# and prints one line per run plus the medians.
#
# Usage: scripts/haproxy/tlscost.sh [N [RUNS [MODES]]]   (default 2000 3 "plain tls")
# Environment: PARLEY_BIN (default: go build ./cmd/parley into the work dir),
#   TLSCOST_PORT_BASE (5 ports from it; default 18445), TLSCOST_HOLD (bench
#   -hold; default 10s), TLSCOST_SOURCE_IPS (default 127.0.0.2-127.0.0.40).
# Loopback only; everything it starts is stopped at exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

N="${1:-2000}"
RUNS="${2:-3}"
MODES="${3:-plain tls}"
BASE="${TLSCOST_PORT_BASE:-18445}"
HOLD="${TLSCOST_HOLD:-10s}"
SRC="${TLSCOST_SOURCE_IPS:-127.0.0.2-127.0.0.40}"
WORK="$(mktemp -d /tmp/parley-tlscost.XXXXXX)"
BIN="${PARLEY_BIN:-}"
if [[ -z "$BIN" ]]; then
	BIN="$WORK/parley"
	go build -o "$BIN" ./cmd/parley
fi
WS_PORT=$BASE CS_HTTP=$((BASE + 1)) LINK=$((BASE + 2)) LOGIC_HTTP=$((BASE + 3)) TLS_PORT=$((BASE + 4))
SETS=(-set "connsrv.listen=tcp://127.0.0.1:$WS_PORT" -set "connsrv.http_listen=127.0.0.1:$CS_HTTP"
	-set "logic.link_listen=127.0.0.1:$LINK" -set "logic.http_listen=127.0.0.1:$LOGIC_HTTP" -set "logic.admin_listen=" -set "logic.send_rate=0"
	-set connsrv.ip_conn_rate=0) # the per-IP limit would refuse a bench ramp
export PARLEY_HAPROXY_DIR="$WORK/haproxy" PARLEY_HAPROXY_PORT="$TLS_PORT" PARLEY_HAPROXY_BACKEND="127.0.0.1:$WS_PORT"
export PARLEY_HAPROXY_MAXCONN=$((N + 100))

SA_PID=""
cleanup() {
	bash scripts/haproxy.sh stop >/dev/null 2>&1 || true
	if [[ -n "$SA_PID" ]]; then kill "$SA_PID" 2>/dev/null || true; wait "$SA_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_s="$(getconf CLK_TCK)"

# run MODE prints: mode n standalone_B/conn haproxy_B/conn haproxy_cpu_us/conn
run() {
	local mode="$1" data="$WORK/data.$RANDOM" log="$WORK/standalone.log" extra=() url
	mkdir -p "$data"
	[[ "$mode" == tls ]] && extra=(-set connsrv.proxy_protocol=true -set connsrv.trusted_proxies=127.0.0.1/32)
	env -u PARLEY_HAPROXY_DIR "$BIN" standalone -config configs/standalone.yaml "${SETS[@]}" \
		-set store.backend=pebble -set "store.pebble.dir=$data" "${extra[@]}" >"$log" 2>&1 &
	SA_PID=$!
	for _ in $(seq 300); do grep -q "parley standalone up" "$log" && break; sleep 0.1; done
	grep -q "parley standalone up" "$log" || { cat "$log" >&2; echo "standalone did not come up" >&2; exit 1; }
	local hw="" rss0=0 cpu0=0
	if [[ "$mode" == tls ]]; then
		bash scripts/haproxy.sh start 2>/dev/null
		hw="$(pgrep -P "$(head -n1 "$PARLEY_HAPROXY_DIR/haproxy.pid")")"
		rss0="$(rss_kib "$hw")" cpu0="$(cpu_ticks "$hw")"
		url="wss://localhost:$TLS_PORT/ws"
	else
		url="ws://127.0.0.1:$WS_PORT/ws"
	fi
	local out="$WORK/bench.json" prog="$WORK/bench.progress"
	SSL_CERT_FILE="$PARLEY_HAPROXY_DIR/ca.pem" "$BIN" bench -config configs/standalone.yaml "${SETS[@]}" \
		-url "$url" -conns "$N" -hold "$HOLD" -source-ips "$SRC" -server-pid "$SA_PID" \
		-metrics-url none -json >"$out" 2>"$prog" &
	local bpid=$!
	local hrss=0 hcpu=0
	if [[ -n "$hw" ]]; then
		# Sample HAProxy once every connection is established and idle.
		for _ in $(seq 1200); do
			grep -Eq "established +$N .*alive +$N" "$prog" && break
			kill -0 "$bpid" 2>/dev/null || break
			sleep 0.1
		done
		hcpu=$(($(cpu_ticks "$hw") - cpu0))
		sleep 3
		hrss=$(($(rss_kib "$hw") - rss0))
	fi
	wait "$bpid" || { cat "$prog" >&2; exit 1; }
	python3 - "$out" "$mode" "$N" "$hrss" "$hcpu" "$ticks_per_s" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); mode, n, hrss, hcpu, tps = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
held = r["held"] or 1
sa = (r["after"]["rss_bytes"] - r["before"]["rss_bytes"]) / held
print(f"{mode} n={n} held={r['held']} errors={r['errors'] or {}} standalone={sa:.0f}B/conn "
      f"haproxy={hrss*1024/held:.0f}B/conn haproxy_cpu={hcpu/tps/held*1e6:.0f}us/conn ramp={r['ramp_s']:.1f}s")
PY
	bash scripts/haproxy.sh stop >/dev/null 2>&1 || true
	kill "$SA_PID"
	wait "$SA_PID" 2>/dev/null || true
	SA_PID=""
	rm -rf "$data"
}

MEDIAN='
import re, statistics, sys
rows = sys.stdin.readlines()
med = lambda k: statistics.median(float(re.search(k + "=([0-9.]+)", l).group(1)) for l in rows)
print("  %s: standalone %.0f B/conn, haproxy %.0f B/conn, haproxy cpu %.0f us/conn"
      % (sys.argv[1], med(" standalone"), med(" haproxy"), med("haproxy_cpu")))
'
results="$WORK/results"
for mode in $MODES; do
	for ((i = 1; i <= RUNS; i++)); do
		run "$mode" | tee -a "$results"
	done
done
echo "medians over $RUNS runs:"
for mode in $MODES; do
	grep "^$mode " "$results" | python3 -c "$MEDIAN" "$mode"
done
