#!/usr/bin/env bash
# scripts/kafka.sh — a real single-node Apache Kafka 4 (KRaft, combined
# broker and controller) for tests, resolved from Maven Central and run on
# Java 17. It carries the push events of adapters/events in tests.
#
# Usage: scripts/kafka.sh <command>
#   fetch    resolve kafka_2.13, its runtime jars and a logging backend into
#            the cache (skipped when the cache is complete)
#   start    fetch if needed, format fresh storage with a new cluster id,
#            start the node in the background, then wait until it answers a
#            metadata request
#   wait     block until the broker answers a metadata request
#   stop     TERM the node from the PID file, KILL after a timeout
#   status   running or not, PID, ports, RSS; exit 0 running, 3 not running
#   env      print PARLEY_KAFKA_BROKERS=127.0.0.1:<port> for the Go tests
#   logs     print the last 50 log lines
#
# Environment (all optional):
#   PARLEY_CACHE                  cache root; default $HOME/.cache/parley
#   PARLEY_KAFKA_VERSION          kafka_2.13 version; default 4.1.1
#   PARLEY_KAFKA_DIR              run dir (config, data, logs, PID);
#                                 default /tmp/parley-kafka
#   PARLEY_KAFKA_PORT             PLAINTEXT (client) port; default 19092
#   PARLEY_KAFKA_CONTROLLER_PORT  KRaft controller port; default 19093
#   PARLEY_KAFKA_HEAP             -Xmx and -Xms; default 512m
#   PARLEY_KAFKA_TIMEOUT          seconds to wait for the broker; default 120
#   PARLEY_KAFKA_STOP_TIMEOUT     seconds between TERM and KILL; default 30
#   PARLEY_MAVEN_REPO             Maven local repository (-Dmaven.repo.local)
#   PARLEY_JAVA                   java binary; default: a Java 17+ found in
#                                 JAVA_HOME, PATH or /usr/lib/jvm
#
# Every start is a clean cluster: the data dir is wiped and formatted with a
# fresh cluster id (a leftover meta.properties would give a cluster-id
# mismatch). Topics are not auto-created; clients create theirs.
#
# Contract for the Go tests: after `start`, PARLEY_KAFKA_BROKERS (from `env`)
# names the broker as host:port.
#
# Sharing: commands on one run dir are serialised by a lock file beside it
# (<dir>.lock). A second `start` finds the running node and waits for it
# (no wipe); any caller's `stop` stops it for everyone. For a private node
# set PARLEY_KAFKA_DIR and both ports.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATES="$ROOT/scripts/kafka"

VERSION="${PARLEY_KAFKA_VERSION:-4.1.1}"
CACHE_ROOT="${PARLEY_CACHE:-${HOME:-/root}/.cache/parley}"
DIST="$CACHE_ROOT/kafka-$VERSION"
LIB="$DIST/lib"
MARKER="$DIST/.complete"
RUN_DIR="${PARLEY_KAFKA_DIR:-/tmp/parley-kafka}"
PORT="${PARLEY_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${PARLEY_KAFKA_CONTROLLER_PORT:-19093}"
HEAP="${PARLEY_KAFKA_HEAP:-512m}"
TIMEOUT="${PARLEY_KAFKA_TIMEOUT:-120}"
STOP_TIMEOUT="${PARLEY_KAFKA_STOP_TIMEOUT:-30}"
PID_FILE="$RUN_DIR/kafka.pid"
CONFIG="$RUN_DIR/server.properties"
LOG_FILE="$RUN_DIR/logs/server.log"
OUT_FILE="$RUN_DIR/logs/stdout.log"
# Locks live beside, not inside, the dirs they guard: wiping the run dir or
# swapping the lib dir never removes a lock someone holds.
RUN_LOCK="${RUN_DIR%/}.lock"
FETCH_LOCK="$DIST.lock"

SCRIPT=kafka.sh
LOCK_WAIT=600
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

check_config() {
	local p
	for p in "$PORT" "$CONTROLLER_PORT"; do
		if ! [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] || ((p > 65535)); then
			die "port '$p' is not a number in 1..65535"
		fi
	done
	[[ "$PORT" != "$CONTROLLER_PORT" ]] || die "client ($PORT) and controller ($CONTROLLER_PORT) ports must differ"
	[[ "$HEAP" =~ ^[1-9][0-9]*[mMgG]$ ]] || die "PARLEY_KAFKA_HEAP '$HEAP' is not a size like 512m or 1g"
	[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "PARLEY_KAFKA_TIMEOUT '$TIMEOUT' is not a number of seconds"
	[[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "PARLEY_KAFKA_STOP_TIMEOUT '$STOP_TIMEOUT' is not a number of seconds"
	case "$RUN_DIR" in
	/?*) ;;
	*) die "PARLEY_KAFKA_DIR '$RUN_DIR' must be an absolute path other than /" ;;
	esac
}

# java_major prints the feature version of the given java binary (17, 25...).
java_major() {
	"$1" -XshowSettings:properties -version 2>&1 |
		awk -F' = ' '/java.specification.version/ { v = $2; sub(/^1\./, "", v); print v; exit }'
}

# find_java picks a JVM the Kafka 4 broker supports: 17 or newer.
find_java() {
	local c m
	local -a candidates=()
	[[ -n "${PARLEY_JAVA:-}" ]] && candidates+=("$PARLEY_JAVA")
	[[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
	command -v java >/dev/null 2>&1 && candidates+=("$(command -v java)")
	for c in /usr/lib/jvm/*/bin/java; do
		[[ -x "$c" ]] && candidates+=("$c")
	done
	for c in "${candidates[@]}"; do
		[[ -x "$c" ]] || continue
		m="$(java_major "$c" || true)"
		if [[ "$m" =~ ^[0-9]+$ ]] && ((m >= 17)); then
			printf '%s\n' "$c"
			return 0
		fi
		[[ -n "${PARLEY_JAVA:-}" && "$c" == "$PARLEY_JAVA" ]] &&
			die "PARLEY_JAVA=$c is Java $m; the Kafka 4 broker needs Java 17 or newer"
	done
	die "no Java 17+ found (looked at PARLEY_JAVA, JAVA_HOME, PATH, /usr/lib/jvm); install openjdk-17-jre-headless"
}

cache_complete() {
	[[ -f "$MARKER" ]] || return 1
	local jar
	while IFS= read -r jar; do
		[[ -n "$jar" && -s "$LIB/$jar" ]] || return 1
	done <"$MARKER"
	[[ -s "$LIB/kafka_2.13-$VERSION.jar" ]]
}

cmd_fetch() {
	cache_complete && { log "fetch: kafka_2.13 $VERSION cached in $LIB ($(wc -l <"$MARKER") jars), nothing to do"; return 0; }
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
		log "fetch: kafka_2.13 $VERSION cached in $LIB ($(wc -l <"$MARKER") jars), nothing to do"
		return 0
	fi
	command -v mvn >/dev/null 2>&1 || die "fetch: mvn not found; install maven (apt-get install -y maven)"
	mkdir -p "$DIST"
	local tmp="$DIST/lib.tmp.$$" t0 t1 mlog="$DIST/fetch.log"
	rm -rf "$tmp"
	local -a mvn_args=(-B -q -f "$TEMPLATES/pom.xml" "-Dkafka.version=$VERSION"
		dependency:copy-dependencies -DincludeScope=runtime "-DoutputDirectory=$tmp")
	[[ -n "${PARLEY_MAVEN_REPO:-}" ]] && mvn_args=("-Dmaven.repo.local=$PARLEY_MAVEN_REPO" "${mvn_args[@]}")
	log "fetch: resolving org.apache.kafka:kafka_2.13:$VERSION, its runtime dependencies and log4j2"
	t0="$(now_ms)"
	if ! mvn "${mvn_args[@]}" >"$mlog" 2>&1; then
		rm -rf "$tmp"
		tail -n 50 "$mlog" >&2 || true
		die "fetch: mvn failed (full output in $mlog)"
	fi
	[[ -s "$tmp/kafka_2.13-$VERSION.jar" ]] || { rm -rf "$tmp"; die "fetch: mvn succeeded but kafka_2.13-$VERSION.jar is missing"; }
	# Two slf4j APIs on one class path would pick one at random.
	local -a apis=("$tmp"/slf4j-api-*.jar)
	((${#apis[@]} == 1)) || { rm -rf "$tmp"; die "fetch: expected one slf4j-api jar, found ${#apis[@]}"; }
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
	# Guard against a recycled PID: the process must be kafka.Kafka started
	# with this run dir's config.
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- " kafka.Kafka " || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CONFIG" || return 1
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

# jvm_args prints the JVM flags shared by the storage tool and the broker.
jvm_args() {
	printf '%s\n' \
		-Djava.awt.headless=true \
		"-Djava.io.tmpdir=$RUN_DIR/tmp" \
		"-Dlog4j2.configurationFile=$RUN_DIR/log4j2.xml" \
		"-Dparley.kafka.logfile=$LOG_FILE" \
		-cp "$LIB/*"
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
		log "start: already running (pid $pid), keeping its data; waiting for the broker"
		cmd_wait
		return
	fi
	rm -f "$PID_FILE"
	local p
	for p in "$PORT" "$CONTROLLER_PORT"; do
		port_busy "$p" && die "start: 127.0.0.1:$p is already in use (another Kafka? set PARLEY_KAFKA_PORT / PARLEY_KAFKA_CONTROLLER_PORT)"
	done

	local started
	started="$(now_ms)"
	mkdir -p "$RUN_DIR"
	rm -rf "$RUN_DIR/data" "$RUN_DIR/logs" "$RUN_DIR/tmp"
	mkdir -p "$RUN_DIR"/{data,logs,tmp}
	sed -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
		"$TEMPLATES/server.properties.tmpl" >"$CONFIG"
	cp "$TEMPLATES/log4j2.xml" "$RUN_DIR/log4j2.xml"

	local -a jargs
	mapfile -t jargs < <(jvm_args)
	# The storage tool is a short JVM: a small heap, and the JIT's first
	# tier only, which starts faster.
	local -a tool=("$java" -Xmx256m -XX:TieredStopAtLevel=1 "${jargs[@]}" kafka.tools.StorageTool)
	local cluster_id
	cluster_id="$("${tool[@]}" random-uuid 2>>"$OUT_FILE")" || { show_logs; die "start: StorageTool random-uuid failed"; }
	[[ "$cluster_id" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "start: StorageTool random-uuid printed '$cluster_id', not a cluster id"
	"${tool[@]}" format -t "$cluster_id" -c "$CONFIG" >>"$OUT_FILE" 2>&1 ||
		{ show_logs; die "start: StorageTool format failed"; }
	local formatted
	formatted="$(now_ms)"

	local -a args=(
		"-Xms$HEAP" "-Xmx$HEAP"
		-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
		-XX:+ExplicitGCInvokesConcurrent
		"${jargs[@]}"
		kafka.Kafka "$CONFIG"
	)
	printf '%s\n' "$java" "${args[@]}" >"$RUN_DIR/java.args"

	log "start: Kafka $VERSION cluster $cluster_id on 127.0.0.1 port=$PORT controller=$CONTROLLER_PORT heap=$HEAP dir=$RUN_DIR java=$java (formatted in $(secs "$started" "$formatted")s)"
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
		log "start: Kafka did not become ready; stopping it"
		cmd_stop || true
		exit 1
	fi
}

# build_probe compiles scripts/kafka/kafkawait into the run dir and prints
# its path.
build_probe() {
	command -v go >/dev/null 2>&1 || die "wait: go not found; the readiness probe is scripts/kafka/kafkawait (Go)"
	local bin="$RUN_DIR/bin/kafkawait"
	mkdir -p "$RUN_DIR/bin"
	(cd "$ROOT" && go build -o "$bin" ./scripts/kafka/kafkawait) || die "wait: cannot build scripts/kafka/kafkawait"
	printf '%s\n' "$bin"
}

# cmd_wait [PID [STARTED_MS]] waits for the broker; with a PID (or one from
# the PID file) it gives up as soon as that process exits. STARTED_MS (from
# start) makes it report the time since start began.
cmd_wait() {
	check_config
	local probe pid="${1:-}" started="${2:-}" t0 t1 out rc=0
	probe="$(build_probe)"
	[[ -n "$pid" ]] || pid="$(read_pid || true)"
	[[ -n "$pid" ]] || log "wait: no node of ours in $RUN_DIR (no live PID file); waiting for whatever serves 127.0.0.1:$PORT"
	local -a pargs=(-brokers "127.0.0.1:$PORT" -timeout "${TIMEOUT}s" -quiet)
	[[ -n "$pid" ]] && pargs+=(-pid "$pid")
	t0="$(now_ms)"
	out="$("$probe" "${pargs[@]}")" || rc=$?
	t1="$(now_ms)"
	if ((rc != 0)); then
		if ((rc == 3)); then
			log "wait: the Kafka process (pid $pid) exited during startup"
		else
			log "wait: Kafka on 127.0.0.1:$PORT not ready after $(secs "$t0" "$t1")s"
		fi
		show_logs
		return 1
	fi
	local cluster
	cluster="$(sed -n 's/.*cluster=\([^ ]*\).*/\1/p' <<<"$out")"
	if [[ -n "$started" ]]; then
		log "wait: Kafka cluster $cluster ready on 127.0.0.1:$PORT, $(secs "$started" "$t1")s after start"
	else
		log "wait: Kafka cluster $cluster ready on 127.0.0.1:$PORT (waited $(secs "$t0" "$t1")s)"
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
	local i t0
	t0="$(now_ms)"
	for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		# A zombie (our own child on start's failure path) has exited.
		[[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null && [[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]]; then
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
	log "stop: stopped in $(secs "$t0" "$(now_ms)")s"
}

cmd_status() {
	local pid rss
	if pid="$(read_pid)"; then
		rss="$(awk '/^VmRSS/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || echo '?')"
		local broker="not answering"
		port_busy "$PORT" && broker="accepting connections"
		echo "running pid=$pid rss=$rss broker=127.0.0.1:$PORT ($broker) controller=$CONTROLLER_PORT dir=$RUN_DIR"
		return 0
	fi
	echo "not running (dir=$RUN_DIR)"
	return 3
}

cmd_env() {
	check_config
	echo "PARLEY_KAFKA_BROKERS=127.0.0.1:$PORT"
}

main() {
	local cmd="${1:-}"
	[[ $# -gt 0 ]] && shift
	case "$cmd" in
	fetch) cmd_fetch ;;
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
	*) die "unknown command '$cmd' (try: fetch start wait stop status env logs)" ;;
	esac
}

main "$@"
