#!/usr/bin/env bash
# scripts/redis.sh — a real single-node Redis (Debian's redis-server 7.0) on
# loopback for tests and the local fleet. Nothing is persisted: the directory
# keeps only state that can be rebuilt, so every start begins empty.
#
# Usage: scripts/redis.sh <command>
#   start    install redis-server with apt-get if missing, start the server
#            in the background, then wait until it answers PING
#   wait     block until 127.0.0.1:<port> answers PING
#   stop     TERM the server from the PID file, KILL after a timeout
#   status   running or not, PID, port, RSS; exit 0 running, 3 not running
#   env      print PARLEY_REDIS_ADDR=127.0.0.1:<port> for the Go tests
#   logs     print the last 50 log lines
#
# Environment (all optional):
#   PARLEY_REDIS_PORT          port on 127.0.0.1; default 16379
#   PARLEY_REDIS_DIR           run dir (PID file, log); default /tmp/parley-redis
#   PARLEY_REDIS_TIMEOUT       seconds to wait for PING; default 30
#   PARLEY_REDIS_STOP_TIMEOUT  seconds between TERM and KILL; default 10
#   PARLEY_REDIS_SERVER        redis-server binary; default from PATH
#
# Contract for the Go tests: after `start`, PARLEY_REDIS_ADDR (from `env`)
# names the server as host:port (RESP3, no password, DB 0).
#
# Sharing: commands on one run dir are serialised by a lock file beside it
# (<dir>.lock). A second `start` finds the running server and waits for it;
# any caller's `stop` stops it for everyone. For a private server set
# PARLEY_REDIS_DIR and PARLEY_REDIS_PORT.
set -euo pipefail

PORT="${PARLEY_REDIS_PORT:-16379}"
RUN_DIR="${PARLEY_REDIS_DIR:-/tmp/parley-redis}"
TIMEOUT="${PARLEY_REDIS_TIMEOUT:-30}"
STOP_TIMEOUT="${PARLEY_REDIS_STOP_TIMEOUT:-10}"
PID_FILE="$RUN_DIR/redis.pid"
LOG_FILE="$RUN_DIR/redis.log"
OUT_FILE="$RUN_DIR/stdout.log"
RUN_LOCK="${RUN_DIR%/}.lock"

SCRIPT=redis.sh
LOCK_WAIT=120
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

check_config() {
	if ! [[ "$PORT" =~ ^[1-9][0-9]{0,4}$ ]] || ((PORT > 65535)); then
		die "PARLEY_REDIS_PORT '$PORT' is not a number in 1..65535"
	fi
	[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "PARLEY_REDIS_TIMEOUT '$TIMEOUT' is not a number of seconds"
	[[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "PARLEY_REDIS_STOP_TIMEOUT '$STOP_TIMEOUT' is not a number of seconds"
	case "$RUN_DIR" in
	/?*) ;;
	*) die "PARLEY_REDIS_DIR '$RUN_DIR' must be an absolute path other than /" ;;
	esac
}

# server_bin prints the redis-server binary, or fails.
server_bin() {
	if [[ -n "${PARLEY_REDIS_SERVER:-}" ]]; then
		[[ -x "$PARLEY_REDIS_SERVER" ]] || die "PARLEY_REDIS_SERVER=$PARLEY_REDIS_SERVER is not executable"
		printf '%s\n' "$PARLEY_REDIS_SERVER"
		return 0
	fi
	command -v redis-server 2>/dev/null || { [[ -x /usr/bin/redis-server ]] && echo /usr/bin/redis-server; }
}

# install installs Debian's redis-server (and redis-tools for redis-cli).
# The package's own systemd service is not used; where a service manager
# started it on the default port, that instance is left alone.
install() {
	command -v apt-get >/dev/null 2>&1 || die "redis-server not found and apt-get is not available; install Redis 7 yourself"
	local -a sudo=()
	if [[ "$(id -u)" != 0 ]]; then
		command -v sudo >/dev/null 2>&1 || die "redis-server not found; run as root or install sudo (apt-get install redis-server)"
		sudo=(sudo)
	fi
	log "start: redis-server not found, installing Debian's redis-server"
	"${sudo[@]}" apt-get update -q >&2 || log "apt-get update failed; trying the install anyway"
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends redis-server redis-tools >&2 ||
		die "apt-get install redis-server failed"
}

# read_pid prints the PID from the PID file if that process is our server.
read_pid() {
	[[ -f "$PID_FILE" ]] || return 1
	local pid
	pid="$(<"$PID_FILE")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	[[ -r "/proc/$pid/cmdline" ]] || return 1
	# Guard against a recycled PID: redis-server rewrites its argv to
	# "redis-server 127.0.0.1:<port>", so check the name and the port.
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "redis-server" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- ":$PORT" || return 1
	printf '%s\n' "$pid"
}

# port_busy succeeds if something accepts connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ping succeeds when the server answers PING with PONG. Without redis-cli it
# speaks the inline protocol over bash's /dev/tcp.
ping() {
	if command -v redis-cli >/dev/null 2>&1; then
		[[ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" == PONG ]]
		return
	fi
	local reply
	# shellcheck disable=SC2016 # $0 expands in the inner bash
	reply="$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf "PING\r\n" >&3 && head -c 7 <&3' "$PORT" 2>/dev/null)" || return 1
	[[ "$reply" == +PONG* ]]
}

show_logs() {
	local f
	for f in "$OUT_FILE" "$LOG_FILE"; do
		[[ -s "$f" ]] || continue
		printf -- '----- last 50 lines of %s -----\n' "$f" >&2
		tail -n 50 "$f" >&2
	done
}

cmd_start() {
	check_config
	local bin pid
	bin="$(server_bin || true)"
	if [[ -z "$bin" ]]; then
		install
		bin="$(server_bin || true)"
		[[ -n "$bin" ]] || die "redis-server still not found after the install"
	fi
	lock "$RUN_LOCK"
	if pid="$(read_pid)"; then
		unlock
		log "start: already running (pid $pid); waiting for PING"
		cmd_wait "$pid"
		return
	fi
	rm -f "$PID_FILE"
	port_busy "$PORT" && die "start: 127.0.0.1:$PORT is already in use (another Redis? set PARLEY_REDIS_PORT)"
	mkdir -p "$RUN_DIR"
	: >"$LOG_FILE"
	: >"$OUT_FILE"
	log "start: Redis $("$bin" --version | sed -n "s/.*v=\([^ ]*\).*/\1/p") on 127.0.0.1:$PORT dir=$RUN_DIR"
	local started
	started="$(now_ms)"
	# Run in the foreground of a background subshell (not --daemonize) so the
	# PID is known at once and a crash at start is seen by the wait below.
	(
		exec {LOCK_FD}>&-
		cd "$RUN_DIR"
		exec "$bin" --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no \
			--dir "$RUN_DIR" --pidfile "$RUN_DIR/redis-server.pid" --logfile "$LOG_FILE" \
			--daemonize no --protected-mode yes </dev/null >>"$OUT_FILE" 2>&1
	) &
	pid=$!
	printf '%s\n' "$pid" >"$PID_FILE"
	# Keep the lock until the child is redis-server (read_pid recognises it):
	# a concurrent start must find it running, not take it for stale.
	local i
	for ((i = 0; i < 50; i++)); do
		read_pid >/dev/null && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	unlock
	if ! cmd_wait "$pid" "$started"; then
		log "start: Redis did not become ready; stopping it"
		cmd_stop || true
		exit 1
	fi
}

# cmd_wait [PID [STARTED_MS]] waits for PING; with a PID it gives up as soon
# as that process exits.
cmd_wait() {
	check_config
	local pid="${1:-}" started="${2:-}" t0 t1 deadline
	[[ -n "$pid" ]] || pid="$(read_pid || true)"
	t0="$(now_ms)"
	deadline=$((t0 + TIMEOUT * 1000))
	while ! ping; do
		if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
			log "wait: the redis-server process (pid $pid) exited during startup"
			show_logs
			return 1
		fi
		if (($(now_ms) > deadline)); then
			log "wait: 127.0.0.1:$PORT does not answer PING after ${TIMEOUT}s"
			show_logs
			return 1
		fi
		sleep 0.1
	done
	t1="$(now_ms)"
	log "wait: Redis ready on 127.0.0.1:$PORT, $(secs "${started:-$t0}" "$t1")s"
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
	log "stop: sending TERM to pid $pid"
	kill -TERM "$pid" 2>/dev/null || true
	local i
	for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "stop: still running after ${STOP_TIMEOUT}s, sending KILL"
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	wait "$pid" 2>/dev/null || true
	rm -f "$PID_FILE"
	unlock
	log "stop: stopped"
}

cmd_status() {
	check_config
	local pid rss
	if pid="$(read_pid)"; then
		rss="$(awk '/^VmRSS/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || echo '?')"
		local state="not answering"
		ping && state="answering PING"
		echo "running pid=$pid rss=$rss addr=127.0.0.1:$PORT ($state) dir=$RUN_DIR"
		return 0
	fi
	echo "not running (dir=$RUN_DIR port=$PORT)"
	return 3
}

cmd_env() {
	check_config
	echo "PARLEY_REDIS_ADDR=127.0.0.1:$PORT"
}

main() {
	local cmd="${1:-}"
	[[ $# -gt 0 ]] && shift
	case "$cmd" in
	start) cmd_start ;;
	wait) cmd_wait ;;
	stop) cmd_stop ;;
	status) cmd_status ;;
	env) cmd_env ;;
	logs) show_logs ;;
	-h | --help | help | "")
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
		[[ -n "$cmd" ]]
		;;
	*) die "unknown command '$cmd' (try: start wait stop status env logs)" ;;
	esac
}

main "$@"
