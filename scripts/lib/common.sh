# scripts/lib/common.sh — helpers shared by the service scripts
# (cassandra.sh, kafka.sh, redis.sh, haproxy.sh). Source it after setting
#   SCRIPT     the script's name in messages, e.g. "kafka.sh"
#   LOCK_WAIT  seconds lock waits for another holder
# shellcheck shell=bash

log() { printf '%s: %s\n' "$SCRIPT" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# lock FILE takes an exclusive flock on FILE (waiting up to LOCK_WAIT
# seconds) and keeps it until unlock or exit. Concurrent commands on one run
# dir serialise: a second `start` finds the first's server and waits for it
# instead of wiping its data. Started servers must not inherit the fd (the
# scripts close it before exec).
LOCK_FD=""
lock() {
	mkdir -p "$(dirname "$1")"
	exec {LOCK_FD}>>"$1"
	if ! flock -n "$LOCK_FD"; then
		log "waiting for lock $1 (another $SCRIPT is running)"
		flock -w "$LOCK_WAIT" "$LOCK_FD" || die "cannot lock $1 within ${LOCK_WAIT}s"
	fi
}
unlock() {
	[[ -n "$LOCK_FD" ]] || return 0
	flock -u "$LOCK_FD"
	exec {LOCK_FD}>&-
	LOCK_FD=""
}

# now_ms prints the wall clock in milliseconds.
now_ms() { date +%s%3N; }

# secs prints the seconds between two millisecond stamps, e.g. 12.3.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }
