#!/usr/bin/env bash
# scripts/web-test.sh: build the web client (web/) and test it: the SDK unit
# tests (node --test) and the browser tests (playwright-core driving
# Debian's chromium) against a real `parley standalone` on free ports with a
# temporary data directory.
#
# On a fresh Debian machine it installs what it needs (as root or through
# sudo): chromium (only when /usr/bin/chromium is missing) and nodejs/npm
# (only when node is missing; playwright-core needs node >= 20, so Debian 12's
# nodejs 18 is refused with a clear message); then `npm ci` in web/. Browser downloads are
# never attempted (no `playwright install`). Needs Go to build the server.
#
# Environment: SCREENSHOTS=dir writes the app screenshots there (e.g.
# SCREENSHOTS=docs/screenshots); KEEP_TMP=1 keeps the temp dir (server log).
# The last line is "N passed, N failed" (unit + browser tests); the exit
# status is non-zero when anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
t0=$(date +%s)

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"
	elif command -v sudo >/dev/null 2>&1; then sudo "$@"
	else echo "web-test: need root to run: $*" >&2; return 1
	fi
}

pkgs=()
[ -x /usr/bin/chromium ] || pkgs+=(chromium)
command -v node >/dev/null 2>&1 || pkgs+=(nodejs npm)
if [ ${#pkgs[@]} -gt 0 ]; then
	echo "web-test: installing ${pkgs[*]}"
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"
fi

if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
	echo "web-test: node >= 20 is needed (playwright-core); found $(node --version)" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-web-test.XXXXXX")
pid=""
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [ "${KEEP_TMP:-}" = 1 ]; then echo "web-test: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

(cd web && npm ci --no-audit --no-fund --loglevel=error)
(cd web && node build.mjs)

# SDK unit tests (node's built-in runner, on the compiled SDK).
unit_pass=0 unit_fail=0
if (cd web && node --test test/sdk/) >"$tmp/unit.log" 2>&1; then :; fi
unit_pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$tmp/unit.log" | tail -1)
unit_fail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$tmp/unit.log" | tail -1)
unit_pass=${unit_pass:-0}
unit_fail=${unit_fail:-1}
grep -E '^(not ok|# (pass|fail))' "$tmp/unit.log" | sed 's/^/unit: /' || true
if [ "$unit_fail" != 0 ]; then cat "$tmp/unit.log"; fi

go build -o "$tmp/parley" ./cmd/parley

# Four free loopback ports (bound and released by node; a race with another
# process is possible but unlikely).
read -r ws_port cs_http_port link_port http_port < <(node -e '
const net = require("net");
const ports = [];
(function next() {
  if (ports.length === 4) { console.log(ports.join(" ")); return; }
  const s = net.createServer().listen(0, "127.0.0.1", () => { ports.push(s.address().port); s.close(next); });
})();')

"$tmp/parley" standalone -config configs/standalone.yaml \
	-set "connsrv.listen=tcp://127.0.0.1:$ws_port" \
	-set "connsrv.http_listen=127.0.0.1:$cs_http_port" \
	-set "logic.link_listen=127.0.0.1:$link_port" \
	-set "logic.http_listen=127.0.0.1:$http_port" \
	-set "logic.admin_listen=" \
	-set "store.pebble.dir=$tmp/data" \
	-set "logic.web_dir=$root/web/dist" \
	>"$tmp/server.log" 2>&1 &
pid=$!

# Ready when both tiers answer /readyz and the page is served.
if ! node -e '
const urls = process.argv.slice(1);
const end = Date.now() + 30000;
(async function poll() {
  for (;;) {
    const ok = await Promise.all(urls.map((u) => fetch(u).then((r) => r.ok, () => false)));
    if (ok.every(Boolean)) return;
    if (Date.now() > end) { console.error("web-test: server not ready"); process.exit(1); }
    await new Promise((r) => setTimeout(r, 100));
  }
})();' "http://127.0.0.1:$http_port/readyz" "http://127.0.0.1:$cs_http_port/readyz" "http://127.0.0.1:$http_port/"; then
	cat "$tmp/server.log"
	echo "0 passed, 1 failed"
	exit 1
fi
echo "web-test: parley standalone pid $pid, ws :$ws_port, http :$http_port ($(($(date +%s) - t0)) s so far)"

e2e_status=0
PARLEY_FRESH=1 PARLEY_HTTP="http://127.0.0.1:$http_port" PARLEY_WS="ws://127.0.0.1:$ws_port/ws" \
	SCREENSHOTS="${SCREENSHOTS:+$root/${SCREENSHOTS#"$root"/}}" \
	node web/test/e2e.mjs >"$tmp/e2e.log" 2>&1 || e2e_status=$?
grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$tmp/e2e.log" | sed 's/^/e2e: /' || true
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$tmp/e2e.log" | tail -1 || true)
e2e_pass=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
e2e_fail=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed$/\1/p')
e2e_pass=${e2e_pass:-0}
e2e_fail=${e2e_fail:-1}
if [ "$e2e_status" != 0 ] && [ "$e2e_fail" = 0 ]; then e2e_fail=1; fi
if [ "$e2e_fail" != 0 ]; then
	echo "web-test: server log (tail):"
	tail -40 "$tmp/server.log"
fi

echo "web-test: took $(($(date +%s) - t0)) s"
echo "$((unit_pass + e2e_pass)) passed, $((unit_fail + e2e_fail)) failed"
[ "$unit_fail" = 0 ] && [ "$e2e_fail" = 0 ]
