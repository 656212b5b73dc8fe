#!/usr/bin/env bash
# One fixed-rate load run against a fresh standalone node: prints a JSON
# line with the server's and the generator's CPU per message (utime+stime
# from /proc over 10 s of the 20 s window) and the load test's delivered
# rate, lost, duplicates and send-to-deliver latency.
# usage: scripts/cpu-per-msg.sh BINARY RATE [PAIRS]   (default 1000 pairs)
# Compare two binaries in alternating runs, e.g.
#   for i in 1 2 3; do scripts/cpu-per-msg.sh /tmp/old 4000; scripts/cpu-per-msg.sh /tmp/new 4000; done
# Ports 19500-19581 on loopback; the node's data goes to a temporary dir.
set -u
cd "$(dirname "$0")/.."
BIN=$1 RATE=$2 PAIRS=${3:-1000}
D=$(mktemp -d)
log=$(mktemp)
"$BIN" standalone -config configs/standalone.yaml -set store.pebble.dir="$D" \
  -set connsrv.listen=tcp://127.0.0.1:19500 -set connsrv.http_listen=127.0.0.1:19502 \
  -set logic.link_listen=127.0.0.1:19570 -set logic.http_listen=127.0.0.1:19581 \
  -set logic.admin_listen= >"$log" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null; wait $SP 2>/dev/null; rm -rf "$D" "$log" "$D.json"' EXIT
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:19581/readyz >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN" loadtest -config configs/standalone.yaml -url ws://127.0.0.1:19500/ws -pairs "$PAIRS" \
  -rate "$RATE" -duration 20s -json >"$D.json" 2>/dev/null &
LP=$!
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
sleep 8
t0=$(cpu $SP) g0=$(cpu $LP)
sleep 10
t1=$(cpu $SP) g1=$(cpu $LP)
wait $LP
python3 - "$BIN" "$RATE" "$t0" "$t1" "$g0" "$g1" "$(getconf CLK_TCK)" "$D.json" <<'PY'
import json, sys
b, rate, t0, t1, g0, g1, tck, path = sys.argv[1:]
rate, tck = float(rate), float(tck)
srv = (float(t1) - float(t0)) / tck / 10
gen = (float(g1) - float(g0)) / tck / 10
d = json.load(open(path))
lat = d.get("send_to_deliver", {})
print(json.dumps({"bin": b, "rate": rate, "server_us_per_msg": round(srv / rate * 1e6, 1),
                  "generator_us_per_msg": round(gen / rate * 1e6, 1), "deliver_rate": d.get("deliver_rate"),
                  "sent": d.get("sent"), "lost": d.get("lost"), "duplicates": d.get("duplicates"), "errors": d.get("errors"),
                  "p50_ms": lat.get("p50_ms"), "p99_ms": lat.get("p99_ms"), "p999_ms": lat.get("p999_ms")}))
PY
