#!/usr/bin/env bash
# scripts/haproxy.sh — HAProxy (Debian's package) terminating client TLS 1.3
# in front of a Parley connection node. gnet has no TLS: HAProxy takes
# wss:// on 127.0.0.1:<port> and forwards the plaintext WebSocket to
# connsrv with a PROXY protocol v2 header (run connsrv with
# connsrv.proxy_protocol: true). See docs/tls.md.
#
# Usage: scripts/haproxy.sh <command>
#   install  install haproxy, openssl and socat with apt-get if missing
#   start    install haproxy (and openssl) with apt-get if missing, make a
#            self-signed test CA and server certificate in the run dir when
#            PARLEY_HAPROXY_CERT is empty, write the config from
#            scripts/haproxy/haproxy.cfg.tmpl, start HAProxy in
#            master-worker mode in the background and wait for the port
#   reload   check the config, then SIGUSR2 the master: the config and the
#            certificates are read again; established connections stay on
#            the old worker (until they end or PARLEY_HAPROXY_HARD_STOP),
#            new ones get the new worker. Waits for "Loading success".
#   cert     swap the certificate in the running worker through the runtime
#            API (set ssl cert + commit ssl cert) from the PEM file now at
#            PARLEY_HAPROXY_CERT (or the run dir's server.pem): no new
#            process at all. Needs socat (installed if missing).
#   stop     TERM the master (it stops the workers), KILL after a timeout
#   status   running or not, PIDs, port, RSS; exit 0 running, 3 not running
#   env      print PARLEY_HAPROXY=1, PARLEY_HAPROXY_URL=wss://.../ws and
#            PARLEY_HAPROXY_CA=<CA bundle> (when this script made the CA)
#   logs     print the last 50 log lines
#
# Environment (all optional):
#   PARLEY_HAPROXY_PORT        TLS port; default 18443
#   PARLEY_HAPROXY_BIND        listen address; default 127.0.0.1
#   PARLEY_HAPROXY_BACKEND     connsrv's WebSocket host:port; default 127.0.0.1:8080
#   PARLEY_HAPROXY_DIR         run dir (config, PID file, log, sockets, test
#                              certificates); default /tmp/parley-haproxy
#   PARLEY_HAPROXY_CERT        PEM with the server certificate chain and its
#                              key (HAProxy's crt format); default: a test
#                              CA and certificate made in the run dir
#   PARLEY_HAPROXY_MAXCONN     connections at once; default (hard open-files
#                              limit - 200) / 2, at most 100000
#   PARLEY_HAPROXY_HARD_STOP   how long an old worker keeps its connections
#                              after a reload; default 1h
#   PARLEY_HAPROXY_LOG_LEVEL   notice (default) or info (one line per connection)
#   PARLEY_HAPROXY_TIMEOUT     seconds to wait for start/reload; default 30
#   PARLEY_HAPROXY_STOP_TIMEOUT seconds between TERM and KILL; default 10
#   PARLEY_HAPROXY_BIN         haproxy binary; default from PATH
#
# Sharing: commands on one run dir are serialised by a lock file beside it
# (<dir>.lock). For a private instance set PARLEY_HAPROXY_DIR and
# PARLEY_HAPROXY_PORT.
set -euo pipefail

PORT="${PARLEY_HAPROXY_PORT:-18443}"
BIND="${PARLEY_HAPROXY_BIND:-127.0.0.1}"
BACKEND="${PARLEY_HAPROXY_BACKEND:-127.0.0.1:8080}"
RUN_DIR="${PARLEY_HAPROXY_DIR:-/tmp/parley-haproxy}"
RUN_DIR="${RUN_DIR%/}"
CERT="${PARLEY_HAPROXY_CERT:-}"
HARD_STOP="${PARLEY_HAPROXY_HARD_STOP:-1h}"
LOG_LEVEL="${PARLEY_HAPROXY_LOG_LEVEL:-notice}"
TIMEOUT="${PARLEY_HAPROXY_TIMEOUT:-30}"
STOP_TIMEOUT="${PARLEY_HAPROXY_STOP_TIMEOUT:-10}"
TEMPLATE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/haproxy/haproxy.cfg.tmpl"
CFG="$RUN_DIR/haproxy.cfg"
PID_FILE="$RUN_DIR/haproxy.pid"
LOG_FILE="$RUN_DIR/haproxy.log"
SOCK="$RUN_DIR/admin.sock"
RUN_LOCK="$RUN_DIR.lock"

SCRIPT=haproxy.sh
LOCK_WAIT=120
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# cert_file prints the PEM HAProxy serves.
cert_file() {
	if [[ -n "$CERT" ]]; then printf '%s\n' "$CERT"; else printf '%s\n' "$RUN_DIR/server.pem"; fi
}

check_config() {
	if ! [[ "$PORT" =~ ^[1-9][0-9]{0,4}$ ]] || ((PORT > 65535)); then
		die "PARLEY_HAPROXY_PORT '$PORT' is not a number in 1..65535"
	fi
	[[ "$BACKEND" =~ ^[^:]+:[1-9][0-9]{0,4}$ ]] || die "PARLEY_HAPROXY_BACKEND '$BACKEND' is not host:port"
	[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "PARLEY_HAPROXY_TIMEOUT '$TIMEOUT' is not a number of seconds"
	[[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "PARLEY_HAPROXY_STOP_TIMEOUT '$STOP_TIMEOUT' is not a number of seconds"
	[[ "$HARD_STOP" =~ ^[0-9]+(ms|s|m|h|d)?$ ]] || die "PARLEY_HAPROXY_HARD_STOP '$HARD_STOP' is not a duration like 30s or 1h"
	case "$LOG_LEVEL" in notice | info | warning | err) ;; *) die "PARLEY_HAPROXY_LOG_LEVEL '$LOG_LEVEL' is not notice, info, warning or err" ;; esac
	case "$RUN_DIR" in
	/?*) ;;
	*) die "PARLEY_HAPROXY_DIR '$RUN_DIR' must be an absolute path other than /" ;;
	esac
	if [[ -n "${PARLEY_HAPROXY_MAXCONN:-}" ]]; then
		[[ "$PARLEY_HAPROXY_MAXCONN" =~ ^[1-9][0-9]*$ ]] || die "PARLEY_HAPROXY_MAXCONN '$PARLEY_HAPROXY_MAXCONN' is not a positive number"
	fi
}

# maxconn prints the connection limit: two descriptors per connection must
# fit the hard open-files limit.
maxconn() {
	local hard fit
	hard="$(ulimit -Hn)"
	[[ "$hard" == unlimited ]] && hard=1048576
	fit=$(((hard - 200) / 2))
	((fit > 100000)) && fit=100000
	if [[ -n "${PARLEY_HAPROXY_MAXCONN:-}" ]]; then
		((PARLEY_HAPROXY_MAXCONN <= fit)) || die "PARLEY_HAPROXY_MAXCONN=$PARLEY_HAPROXY_MAXCONN needs $((2 * PARLEY_HAPROXY_MAXCONN + 200)) open files; the hard limit is $hard"
		fit="$PARLEY_HAPROXY_MAXCONN"
	fi
	printf '%s\n' "$fit"
}

haproxy_bin() {
	if [[ -n "${PARLEY_HAPROXY_BIN:-}" ]]; then
		[[ -x "$PARLEY_HAPROXY_BIN" ]] || die "PARLEY_HAPROXY_BIN=$PARLEY_HAPROXY_BIN is not executable"
		printf '%s\n' "$PARLEY_HAPROXY_BIN"
		return 0
	fi
	command -v haproxy 2>/dev/null || { [[ -x /usr/sbin/haproxy ]] && echo /usr/sbin/haproxy; }
}

# apt_install PKG... installs Debian packages (sudo when not root). The
# haproxy package's own systemd service is not used.
apt_install() {
	command -v apt-get >/dev/null 2>&1 || die "$* not found and apt-get is not available; install it yourself"
	local -a sudo=()
	if [[ "$(id -u)" != 0 ]]; then
		command -v sudo >/dev/null 2>&1 || die "$* not found; run as root or install sudo (apt-get install $*)"
		sudo=(sudo)
	fi
	log "installing Debian's $*"
	"${sudo[@]}" apt-get update -q >&2 || log "apt-get update failed; trying the install anyway"
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@" >&2 ||
		die "apt-get install $* failed"
}

read_pid() {
	[[ -f "$PID_FILE" ]] || return 1
	local pid
	pid="$(head -n 1 "$PID_FILE")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	[[ -r "/proc/$pid/cmdline" ]] || return 1
	# Guard against a recycled PID: our master runs with our config file.
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "haproxy" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CFG" || return 1
	printf '%s\n' "$pid"
}

# workers prints the PIDs of the master's children (the workers).
workers() { pgrep -P "$1" 2>/dev/null | tr '\n' ' '; }

port_busy() { (exec 3<>"/dev/tcp/$BIND/$1") 2>/dev/null; }

show_logs() {
	[[ -s "$LOG_FILE" ]] || return 0
	printf -- '----- last 50 lines of %s -----\n' "$LOG_FILE" >&2
	tail -n 50 "$LOG_FILE" >&2
}

# gen_cert makes a test CA (ca.pem) and a server certificate for localhost
# and 127.0.0.1 signed by it (server.pem: chain and key), ECDSA P-256.
gen_cert() {
	command -v openssl >/dev/null 2>&1 || apt_install openssl
	local d="$RUN_DIR" tmp
	tmp="$(mktemp -d "$d/gencert.XXXXXX")"
	openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key" 2>/dev/null
	openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days 30 -subj "/CN=parley test CA" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		-out "$tmp/ca.pem" 2>/dev/null
	openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/server.key" 2>/dev/null
	openssl req -new -key "$tmp/server.key" -subj "/CN=localhost" -out "$tmp/server.csr" 2>/dev/null
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' >"$tmp/ext"
	openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
		-days 30 -sha256 -extfile "$tmp/ext" -out "$tmp/server.crt" 2>/dev/null
	cat "$tmp/server.crt" "$tmp/server.key" >"$tmp/server.pem"
	chmod 600 "$tmp/server.pem" "$tmp/ca.key"
	mv "$tmp/ca.pem" "$d/ca.pem"
	mv "$tmp/ca.key" "$d/ca.key"
	mv "$tmp/server.pem" "$d/server.pem"
	rm -rf "$tmp"
	log "start: made a test CA ($d/ca.pem) and server certificate ($d/server.pem) for localhost, 127.0.0.1"
}

check_cert() {
	local pem="$1"
	[[ -r "$pem" ]] || die "certificate $pem is not readable"
	grep -q "PRIVATE KEY" "$pem" || die "certificate $pem has no private key (HAProxy's crt wants the chain and the key in one PEM)"
	if command -v openssl >/dev/null 2>&1; then
		openssl x509 -noout -in "$pem" 2>/dev/null || die "certificate $pem does not start with a PEM certificate"
	fi
}

write_config() {
	local cert="$1" mc
	mc="$(maxconn)"
	sed -e "s|@DIR@|$RUN_DIR|g" -e "s|@PORT@|$PORT|g" -e "s|@BIND@|$BIND|g" \
		-e "s|@BACKEND@|$BACKEND|g" -e "s|@CERT@|$cert|g" -e "s|@MAXCONN@|$mc|g" \
		-e "s|@HARD_STOP@|$HARD_STOP|g" -e "s|@LOG_LEVEL@|$LOG_LEVEL|g" \
		"$TEMPLATE" >"$CFG.tmp"
	mv "$CFG.tmp" "$CFG"
}

# loadings counts the master's "Loading success" lines so far.
loadings() { grep -c "Loading success" "$LOG_FILE" 2>/dev/null || true; }
failures() { grep -c "Loading failure" "$LOG_FILE" 2>/dev/null || true; }

# wait_loaded PID WANT waits until the log has WANT "Loading success"
# lines and the port accepts connections.
wait_loaded() {
	local pid="$1" want="$2" fails0 deadline
	fails0="$(failures)"
	deadline=$(($(now_ms) + TIMEOUT * 1000))
	while (($(loadings) < want)) || ! port_busy "$PORT"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "the haproxy master (pid $pid) exited"
			show_logs
			return 1
		fi
		if (($(failures) > fails0)); then
			log "haproxy reported a loading failure"
			show_logs
			return 1
		fi
		if (($(now_ms) > deadline)); then
			log "haproxy not loaded on $BIND:$PORT after ${TIMEOUT}s"
			show_logs
			return 1
		fi
		sleep 0.1
	done
}

cmd_install() {
	local missing=()
	[[ -n "$(haproxy_bin || true)" ]] || missing+=(haproxy)
	command -v openssl >/dev/null 2>&1 || missing+=(openssl)
	command -v socat >/dev/null 2>&1 || missing+=(socat)
	if ((${#missing[@]} > 0)); then apt_install "${missing[@]}"; fi
	log "install: $("$(haproxy_bin)" -v | head -n 1 | cut -d' ' -f1-3)"
}

cmd_start() {
	check_config
	local bin pid cert
	bin="$(haproxy_bin || true)"
	if [[ -z "$bin" ]]; then
		apt_install haproxy openssl
		bin="$(haproxy_bin || true)"
		[[ -n "$bin" ]] || die "haproxy still not found after the install"
	fi
	[[ -r "$TEMPLATE" ]] || die "config template $TEMPLATE is missing"
	lock "$RUN_LOCK"
	if pid="$(read_pid)"; then
		unlock
		log "start: already running (pid $pid)"
		return 0
	fi
	rm -f "$PID_FILE"
	port_busy "$PORT" && die "start: $BIND:$PORT is already in use (set PARLEY_HAPROXY_PORT)"
	mkdir -p "$RUN_DIR"
	cert="$(cert_file)"
	if [[ -z "$CERT" && ! -s "$cert" ]]; then
		gen_cert
	fi
	check_cert "$cert"
	write_config "$cert"
	"$bin" -c -q -f "$CFG" >&2 || die "start: haproxy rejects $CFG"
	: >"$LOG_FILE"
	local started
	started="$(now_ms)"
	log "start: $("$bin" -v | head -n 1 | cut -d' ' -f1-3) on $BIND:$PORT -> $BACKEND (send-proxy-v2) dir=$RUN_DIR"
	# Foreground master (-W without -D) in a background subshell: the PID
	# is known at once and a crash at start is seen by the wait below.
	(
		exec {LOCK_FD}>&-
		cd "$RUN_DIR"
		ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
		exec "$bin" -W -f "$CFG" </dev/null >>"$LOG_FILE" 2>&1
	) &
	pid=$!
	printf '%s\n' "$pid" >"$PID_FILE"
	unlock
	if ! wait_loaded "$pid" 1; then
		log "start: HAProxy did not come up; stopping it"
		cmd_stop || true
		exit 1
	fi
	log "start: HAProxy ready on $BIND:$PORT (master $pid, worker $(workers "$pid")), $(secs "$started" "$(now_ms)")s"
}

cmd_reload() {
	check_config
	local bin pid n cert
	bin="$(haproxy_bin)" || die "haproxy not found"
	lock "$RUN_LOCK"
	pid="$(read_pid)" || die "reload: not running (dir=$RUN_DIR)"
	cert="$(cert_file)"
	check_cert "$cert"
	write_config "$cert"
	"$bin" -c -q -f "$CFG" >&2 || die "reload: haproxy rejects $CFG; the running config stays"
	n="$(loadings)"
	local before
	before="$(workers "$pid")"
	log "reload: SIGUSR2 to master $pid (workers: $before)"
	kill -USR2 "$pid"
	if ! wait_loaded "$pid" $((n + 1)); then
		unlock
		die "reload: failed; the old worker keeps serving"
	fi
	unlock
	log "reload: done (workers now: $(workers "$pid"); old ones exit when their connections end or after $HARD_STOP)"
}

# runtime CMD sends one command to the runtime API and prints the answer.
runtime() {
	command -v socat >/dev/null 2>&1 || apt_install socat
	[[ -S "$SOCK" ]] || die "no runtime socket at $SOCK"
	printf '%s\n' "$1" | socat -t 5 stdio "unix-connect:$SOCK"
}

cmd_cert() {
	check_config
	local pid cert out
	pid="$(read_pid)" || die "cert: not running (dir=$RUN_DIR)"
	cert="$(cert_file)"
	check_cert "$cert"
	lock "$RUN_LOCK"
	out="$(runtime "set ssl cert $cert <<
$(cat "$cert")
")"
	log "cert: $(printf '%s' "$out" | tr '\n' ' ')"
	printf '%s' "$out" | grep -qi "transaction created\|transaction updated" || { unlock; die "cert: set ssl cert failed"; }
	out="$(runtime "commit ssl cert $cert")"
	log "cert: $(printf '%s' "$out" | tr '\n' ' ')"
	unlock
	printf '%s' "$out" | grep -qi "success" || die "cert: commit ssl cert failed"
	log "cert: new handshakes get the certificate now in $cert (master $pid)"
}

cmd_stop() {
	check_config
	local pid
	lock "$RUN_LOCK"
	if ! pid="$(read_pid)"; then
		[[ -f "$PID_FILE" ]] && log "stop: stale PID file $PID_FILE (process gone), removing"
		rm -f "$PID_FILE"
		unlock
		log "stop: not running"
		return 0
	fi
	local kids
	kids="$(workers "$pid")"
	log "stop: sending TERM to master $pid (workers: $kids)"
	kill -TERM "$pid" 2>/dev/null || true
	local i
	for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "stop: still running after ${STOP_TIMEOUT}s, sending KILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	# Workers of this master that outlived it (KILL leaves them briefly).
	local k
	for k in $kids; do
		for ((i = 0; i < 50; i++)); do
			kill -0 "$k" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$k" 2>/dev/null && tr '\0' ' ' <"/proc/$k/cmdline" 2>/dev/null | grep -qF -- "$CFG"; then
			kill -KILL "$k" 2>/dev/null || true
		fi
	done
	wait "$pid" 2>/dev/null || true
	rm -f "$PID_FILE"
	unlock
	log "stop: stopped"
}

cmd_status() {
	check_config
	local pid rss w
	if pid="$(read_pid)"; then
		rss=""
		for w in $(workers "$pid"); do
			rss+=" $w:$(awk '/^VmRSS/ { printf "%.1fMiB", $2 / 1024 }' "/proc/$w/status" 2>/dev/null || echo '?')"
		done
		echo "running master=$pid workers(rss):${rss:- none} addr=$BIND:$PORT backend=$BACKEND cert=$(cert_file) dir=$RUN_DIR"
		return 0
	fi
	echo "not running (dir=$RUN_DIR port=$PORT)"
	return 3
}

cmd_env() {
	check_config
	echo "PARLEY_HAPROXY=1"
	echo "PARLEY_HAPROXY_URL=wss://localhost:$PORT/ws"
	if [[ -z "$CERT" && -s "$RUN_DIR/ca.pem" ]]; then
		echo "PARLEY_HAPROXY_CA=$RUN_DIR/ca.pem"
	fi
}

main() {
	local cmd="${1:-}"
	[[ $# -gt 0 ]] && shift
	case "$cmd" in
	install) cmd_install ;;
	start) cmd_start ;;
	reload) cmd_reload ;;
	cert) cmd_cert ;;
	stop) cmd_stop ;;
	status) cmd_status ;;
	env) cmd_env ;;
	logs) show_logs ;;
	-h | --help | help | "")
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
		[[ -n "$cmd" ]]
		;;
	*) die "unknown command '$cmd' (try: install start reload cert stop status env logs)" ;;
	esac
}

main "$@"
