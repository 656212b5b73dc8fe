#!/usr/bin/env bash
# scripts/cassandra.sh — a real single-node Apache Cassandra 5.0 for tests,
# resolved from Maven Central and run on Java 17 (the CQL stand-in for
# ScyllaDB in integration tests).
#
# Usage: scripts/cassandra.sh <command>
#   fetch    resolve cassandra-all and its runtime jars into the cache (skipped
#            when the cache is complete)
#   start    fetch if needed, write the config, start the node in the
#            background, then wait until CQL answers; fresh data every start
#   wait     block until CQL answers SELECT release_version FROM system.local
#   stop     TERM the node from the PID file, KILL after a timeout
#   restart  stop, then start keeping the data (a durability check)
#   status   running or not, PID, ports, RSS; exit 0 running, 3 not running
#   env      print PARLEY_CQL_HOSTS=127.0.0.1:<port> for the Go tests
#   logs     print the last 50 log lines
#   nodetool run nodetool against the node (e.g. `nodetool flush`)
#
# Environment (all optional):
#   PARLEY_CACHE                  cache root; default $HOME/.cache/parley
#   PARLEY_CASSANDRA_VERSION      cassandra-all version; default 5.0.6
#   PARLEY_CASSANDRA_DIR          run dir (config, data, logs, PID);
#                                 default /tmp/parley-cassandra
#   PARLEY_CQL_PORT               CQL native port; default 19042
#   PARLEY_CASSANDRA_STORAGE_PORT internode port; default 17000
#   PARLEY_CASSANDRA_JMX_PORT     local-only JMX port (nodetool); default 17199
#   PARLEY_CASSANDRA_HEAP         -Xmx; default 1g
#   PARLEY_CASSANDRA_HEAP_MIN     -Xms; default the same as -Xmx. Cassandra
#                                 mlockall()s its memory at startup (as root
#                                 this succeeds), so the whole -Xms heap is
#                                 resident from the start: 256m cuts the RSS
#                                 by ~0.7 GiB at the cost of heap growth later
#   PARLEY_CASSANDRA_DIRECT       -XX:MaxDirectMemorySize; default 512m
#   PARLEY_CASSANDRA_KEEP_DATA    1 keeps the data dirs on start; default 0
#   PARLEY_CASSANDRA_TIMEOUT      seconds to wait for CQL; default 180
#   PARLEY_CASSANDRA_STOP_TIMEOUT seconds between TERM and KILL; default 60
#   PARLEY_MAVEN_REPO             Maven local repository (-Dmaven.repo.local)
#   PARLEY_JAVA                   java binary; default: a Java 17 or 11 found
#                                 in JAVA_HOME, PATH or /usr/lib/jvm
#
# Contract for the Go tests: after `start`, PARLEY_CQL_HOSTS (from `env`)
# names the node as host:port; connect with protocol version 4.
#
# Sharing: commands on one run dir are serialised by a lock file beside it
# (<dir>.lock). A second `start` finds the running node and waits for it
# (no wipe); any caller's `stop` stops it for everyone. For a private node
# set PARLEY_CASSANDRA_DIR and all three ports.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATES="$ROOT/scripts/cassandra"

VERSION="${PARLEY_CASSANDRA_VERSION:-5.0.6}"
CACHE_ROOT="${PARLEY_CACHE:-${HOME:-/root}/.cache/parley}"
DIST="$CACHE_ROOT/cassandra-$VERSION"
LIB="$DIST/lib"
MARKER="$DIST/.complete"
RUN_DIR="${PARLEY_CASSANDRA_DIR:-/tmp/parley-cassandra}"
CQL_PORT="${PARLEY_CQL_PORT:-19042}"
STORAGE_PORT="${PARLEY_CASSANDRA_STORAGE_PORT:-17000}"
JMX_PORT="${PARLEY_CASSANDRA_JMX_PORT:-17199}"
HEAP="${PARLEY_CASSANDRA_HEAP:-1g}"
HEAP_MIN="${PARLEY_CASSANDRA_HEAP_MIN:-$HEAP}"
DIRECT="${PARLEY_CASSANDRA_DIRECT:-512m}"
KEEP_DATA="${PARLEY_CASSANDRA_KEEP_DATA:-0}"
TIMEOUT="${PARLEY_CASSANDRA_TIMEOUT:-180}"
STOP_TIMEOUT="${PARLEY_CASSANDRA_STOP_TIMEOUT:-60}"
PID_FILE="$RUN_DIR/cassandra.pid"
LOG_FILE="$RUN_DIR/logs/system.log"
OUT_FILE="$RUN_DIR/logs/stdout.log"
# Locks live beside, not inside, the dirs they guard: wiping the run dir or
# swapping the lib dir never removes a lock someone holds.
RUN_LOCK="${RUN_DIR%/}.lock"
FETCH_LOCK="$DIST.lock"

SCRIPT=cassandra.sh
LOCK_WAIT=600
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

check_config() {
	local p
	for p in "$CQL_PORT" "$STORAGE_PORT" "$JMX_PORT"; do
		if ! [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] || ((p > 65535)); then
			die "port '$p' is not a number in 1..65535"
		fi
	done
	[[ "$CQL_PORT" != "$STORAGE_PORT" && "$CQL_PORT" != "$JMX_PORT" && "$STORAGE_PORT" != "$JMX_PORT" ]] ||
		die "CQL ($CQL_PORT), storage ($STORAGE_PORT) and JMX ($JMX_PORT) ports must differ"
	[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "PARLEY_CASSANDRA_TIMEOUT '$TIMEOUT' is not a number of seconds"
	[[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "PARLEY_CASSANDRA_STOP_TIMEOUT '$STOP_TIMEOUT' is not a number of seconds"
	case "$RUN_DIR" in
	/?*) ;;
	*) die "PARLEY_CASSANDRA_DIR '$RUN_DIR' must be an absolute path other than /" ;;
	esac
}

# java_major prints the feature version of the given java binary (17, 25...).
java_major() {
	"$1" -XshowSettings:properties -version 2>&1 |
		awk -F' = ' '/java.specification.version/ { v = $2; sub(/^1\./, "", v); print v; exit }'
}

# find_java picks a JVM Cassandra 5.0 supports: 17 or 11 (not 21+).
find_java() {
	local c m
	local -a candidates=()
	[[ -n "${PARLEY_JAVA:-}" ]] && candidates+=("$PARLEY_JAVA")
	[[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
	command -v java >/dev/null 2>&1 && candidates+=("$(command -v java)")
	for c in /usr/lib/jvm/*17*/bin/java /usr/lib/jvm/*11*/bin/java; do
		[[ -x "$c" ]] && candidates+=("$c")
	done
	for c in "${candidates[@]}"; do
		[[ -x "$c" ]] || continue
		m="$(java_major "$c" || true)"
		if [[ "$m" == 17 || "$m" == 11 ]]; then
			printf '%s\n' "$c"
			return 0
		fi
		[[ -n "${PARLEY_JAVA:-}" && "$c" == "$PARLEY_JAVA" ]] &&
			die "PARLEY_JAVA=$c is Java $m; Cassandra 5.0 runs on Java 11 or 17 only"
	done
	die "no Java 17 or 11 found (looked at PARLEY_JAVA, JAVA_HOME, PATH, /usr/lib/jvm); install openjdk-17-jre-headless"
}

cache_complete() {
	[[ -f "$MARKER" ]] || return 1
	local jar
	while IFS= read -r jar; do
		[[ -n "$jar" && -s "$LIB/$jar" ]] || return 1
	done <"$MARKER"
	[[ -s "$LIB/cassandra-all-$VERSION.jar" ]]
}

cmd_fetch() {
	cache_complete && { log "fetch: cassandra-all $VERSION cached in $LIB ($(wc -l <"$MARKER") jars), nothing to do"; return 0; }
	mkdir -p "$DIST"
	# A separate subshell holds the fetch lock so it never nests with the
	# run-dir lock held by start.
	(
		lock "$FETCH_LOCK"
		fetch_locked
	)
}

fetch_locked() {
	if cache_complete; then
		log "fetch: cassandra-all $VERSION cached in $LIB ($(wc -l <"$MARKER") jars), nothing to do"
		return 0
	fi
	command -v mvn >/dev/null 2>&1 || die "fetch: mvn not found; install maven (apt-get install -y maven)"
	mkdir -p "$DIST"
	local tmp="$DIST/lib.tmp.$$" t0 t1 mlog="$DIST/fetch.log"
	rm -rf "$tmp"
	local -a mvn_args=(-B -q -f "$TEMPLATES/pom.xml" "-Dcassandra.version=$VERSION"
		dependency:copy-dependencies -DincludeScope=runtime "-DoutputDirectory=$tmp")
	[[ -n "${PARLEY_MAVEN_REPO:-}" ]] && mvn_args=("-Dmaven.repo.local=$PARLEY_MAVEN_REPO" "${mvn_args[@]}")
	log "fetch: resolving org.apache.cassandra:cassandra-all:$VERSION and its runtime dependencies"
	t0="$(now_ms)"
	if ! mvn "${mvn_args[@]}" >"$mlog" 2>&1; then
		rm -rf "$tmp"
		tail -n 50 "$mlog" >&2 || true
		die "fetch: mvn failed (full output in $mlog)"
	fi
	[[ -s "$tmp/cassandra-all-$VERSION.jar" ]] || { rm -rf "$tmp"; die "fetch: mvn succeeded but cassandra-all-$VERSION.jar is missing"; }
	# Swap in the new lib dir whole, then write the marker: an interrupted
	# fetch never looks complete.
	rm -f "$MARKER"
	rm -rf "$LIB"
	mv "$tmp" "$LIB"
	(cd "$LIB" && ls -1 -- *.jar) >"$MARKER.tmp"
	mv "$MARKER.tmp" "$MARKER"
	t1="$(now_ms)"
	log "fetch: $(wc -l <"$MARKER") jars, $(du -sh "$LIB" | cut -f1) in $LIB, took $(secs "$t0" "$t1")s"
}

# read_pid prints the PID from the PID file if that process is our node.
read_pid() {
	[[ -f "$PID_FILE" ]] || return 1
	local pid
	pid="$(<"$PID_FILE")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	[[ -r "/proc/$pid/cmdline" ]] || return 1
	# Guard against a recycled PID: the process must be a CassandraDaemon
	# started with this run dir's config.
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "CassandraDaemon" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$RUN_DIR/cassandra.yaml" || return 1
	printf '%s\n' "$pid"
}

# port_busy succeeds if something accepts connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

show_logs() {
	local f
	for f in "$OUT_FILE" "$LOG_FILE"; do
		[[ -s "$f" ]] || continue
		printf -- '----- last 50 lines of %s -----\n' "$f" >&2
		tail -n 50 "$f" >&2
	done
}

# read_options prints the flags of jvm17.options, one per line.
read_options() {
	grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$TEMPLATES/jvm17.options" | sed 's/[[:space:]]*$//'
}

cmd_start() {
	check_config
	local pid java
	java="$(find_java)"
	cmd_fetch
	# Under the lock: a concurrent start either finds this node running and
	# waits for it, or (while a stop holds the lock) waits for the stop.
	lock "$RUN_LOCK"
	if pid="$(read_pid)"; then
		unlock
		log "start: already running (pid $pid), keeping its data; waiting for CQL"
		cmd_wait
		return
	fi
	rm -f "$PID_FILE"
	local p
	for p in "$CQL_PORT" "$STORAGE_PORT" "$JMX_PORT"; do
		port_busy "$p" && die "start: 127.0.0.1:$p is already in use (another Cassandra? set PARLEY_CQL_PORT / PARLEY_CASSANDRA_STORAGE_PORT / PARLEY_CASSANDRA_JMX_PORT)"
	done

	mkdir -p "$RUN_DIR"
	if [[ "$KEEP_DATA" != 1 ]]; then
		rm -rf "$RUN_DIR/data" "$RUN_DIR/commitlog" "$RUN_DIR/saved_caches" \
			"$RUN_DIR/hints" "$RUN_DIR/cdc_raw" "$RUN_DIR/logs"
	fi
	mkdir -p "$RUN_DIR"/{data,commitlog,saved_caches,hints,cdc_raw,logs,triggers,tmp}
	sed -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@CLUSTER_NAME@|parley-test|g" \
		-e "s|@STORAGE_PORT@|$STORAGE_PORT|g" -e "s|@CQL_PORT@|$CQL_PORT|g" \
		"$TEMPLATES/cassandra.yaml.tmpl" >"$RUN_DIR/cassandra.yaml"
	cp "$TEMPLATES/logback.xml" "$RUN_DIR/logback.xml"

	local -a opts
	mapfile -t opts < <(read_options)
	local -a jamms=("$LIB"/jamm-*.jar)
	local jamm="${jamms[0]}"
	[[ -f "$jamm" ]] || die "start: no jamm-*.jar in $LIB (incomplete cache? rm -rf $DIST and fetch again)"
	local -a args=(
		"-Xms$HEAP_MIN" "-Xmx$HEAP" "-XX:MaxDirectMemorySize=$DIRECT"
		"${opts[@]}"
		# jamm measures object sizes for memtable accounting; Cassandra's
		# cassandra-env.sh always loads it as an agent.
		"-javaagent:$jamm"
		"-Djava.io.tmpdir=$RUN_DIR/tmp"
		"-Dcassandra-foreground=true"
		"-Dcassandra.config=file://$RUN_DIR/cassandra.yaml"
		"-Dcassandra.storagedir=$RUN_DIR"
		"-Dcassandra.logdir=$RUN_DIR/logs"
		"-Dcassandra.triggers_dir=$RUN_DIR/triggers"
		# Local-only JMX so `nodetool` works; no remote JMX, no auth.
		"-Dcassandra.jmx.local.port=$JMX_PORT"
		"-Dlogback.configurationFile=$RUN_DIR/logback.xml"
		"-Dparley.cassandra.logfile=$LOG_FILE"
		-cp "$LIB/*"
		org.apache.cassandra.service.CassandraDaemon
	)
	printf '%s\n' "$java" "${args[@]}" >"$RUN_DIR/java.args"

	log "start: Cassandra $VERSION on 127.0.0.1 cql=$CQL_PORT storage=$STORAGE_PORT jmx=$JMX_PORT heap=$HEAP_MIN/$HEAP dir=$RUN_DIR java=$java"
	local started
	started="$(now_ms)"
	# cd so nothing (hs_err files, stray relative paths) lands in the repo.
	(
		exec {LOCK_FD}>&-
		cd "$RUN_DIR"
		exec "$java" "${args[@]}" </dev/null >>"$OUT_FILE" 2>&1
	) &
	pid=$!
	printf '%s\n' "$pid" >"$PID_FILE"
	unlock
	log "start: pid $pid, log $LOG_FILE"
	# Pass the PID: if the JVM dies at once it is a zombie child of this
	# shell, which read_pid no longer recognises.
	if ! cmd_wait "$pid" "$started"; then
		log "start: Cassandra did not become ready; stopping it"
		cmd_stop || true
		exit 1
	fi
}

# build_probe compiles scripts/cqlwait into the run dir and prints its path.
build_probe() {
	command -v go >/dev/null 2>&1 || die "wait: go not found; the readiness probe is scripts/cqlwait (Go)"
	local bin="$RUN_DIR/bin/cqlwait"
	mkdir -p "$RUN_DIR/bin"
	(cd "$ROOT" && go build -o "$bin" ./scripts/cqlwait) || die "wait: cannot build scripts/cqlwait"
	printf '%s\n' "$bin"
}

# cmd_wait [PID [STARTED_MS]] waits for CQL; with a PID (or one from the PID
# file) it gives up as soon as that process exits. STARTED_MS (from start)
# makes it report the time since the JVM was launched.
cmd_wait() {
	check_config
	local probe pid="${1:-}" started="${2:-}" t0 t1 out rc=0
	probe="$(build_probe)"
	[[ -n "$pid" ]] || pid="$(read_pid || true)"
	[[ -n "$pid" ]] || log "wait: no node of ours in $RUN_DIR (no live PID file); waiting for whatever serves 127.0.0.1:$CQL_PORT"
	local -a pargs=(-hosts "127.0.0.1:$CQL_PORT" -timeout "${TIMEOUT}s" -quiet)
	[[ -n "$pid" ]] && pargs+=(-pid "$pid")
	t0="$(now_ms)"
	out="$("$probe" "${pargs[@]}")" || rc=$?
	t1="$(now_ms)"
	if ((rc != 0)); then
		if ((rc == 3)); then
			log "wait: the Cassandra process (pid $pid) exited during startup"
		else
			log "wait: CQL on 127.0.0.1:$CQL_PORT not ready after $(secs "$t0" "$t1")s"
		fi
		show_logs
		return 1
	fi
	local version
	version="$(sed -n 's/.*release_version=\([^ ]*\).*/\1/p' <<<"$out")"
	if [[ -n "$started" ]]; then
		log "wait: Cassandra $version ready on 127.0.0.1:$CQL_PORT, $(secs "$started" "$t1")s after start"
	else
		log "wait: Cassandra $version ready on 127.0.0.1:$CQL_PORT (waited $(secs "$t0" "$t1")s)"
	fi
}

cmd_stop() {
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
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	# Reap it if this shell started it (start's failure path).
	wait "$pid" 2>/dev/null || true
	rm -f "$PID_FILE"
	unlock
	log "stop: stopped"
}

cmd_status() {
	local pid rss
	if pid="$(read_pid)"; then
		rss="$(awk '/^VmRSS/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || echo '?')"
		local cql="not answering"
		port_busy "$CQL_PORT" && cql="accepting connections"
		echo "running pid=$pid rss=$rss cql=127.0.0.1:$CQL_PORT ($cql) storage=$STORAGE_PORT jmx=$JMX_PORT dir=$RUN_DIR"
		return 0
	fi
	echo "not running (dir=$RUN_DIR)"
	return 3
}

cmd_env() {
	check_config
	echo "PARLEY_CQL_HOSTS=127.0.0.1:$CQL_PORT"
}

cmd_nodetool() {
	local java
	java="$(find_java)"
	cache_complete || die "nodetool: no complete cache in $LIB; run fetch first"
	local -a opts
	mapfile -t opts < <(read_options)
	mkdir -p "$RUN_DIR/logs"
	# nodetool keeps a command history under user.home/.cassandra.
	"$java" -Xmx256m "${opts[@]}" -cp "$LIB/*" "-Duser.home=$RUN_DIR" \
		"-Dlogback.configurationFile=$TEMPLATES/logback.xml" "-Dparley.cassandra.logfile=$RUN_DIR/logs/nodetool.log" \
		org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p "$JMX_PORT" "$@"
}

main() {
	local cmd="${1:-}"
	[[ $# -gt 0 ]] && shift
	case "$cmd" in
	fetch) cmd_fetch ;;
	start) cmd_start ;;
	wait) cmd_wait ;;
	stop) cmd_stop ;;
	restart)
		cmd_stop
		KEEP_DATA=1 cmd_start
		;;
	status) cmd_status ;;
	env) cmd_env ;;
	logs) show_logs ;;
	nodetool) cmd_nodetool "$@" ;;
	-h | --help | help | "")
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
		[[ -n "$cmd" ]]
		;;
	*) die "unknown command '$cmd' (try: fetch start wait stop restart status env logs nodetool)" ;;
	esac
}

main "$@"
