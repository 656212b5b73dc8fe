#!/usr/bin/env bash
# scripts/cassandra.sh — a real Apache Cassandra 5.0 for tests, resolved from
# Maven Central and run on Java 17 (the CQL stand-in for ScyllaDB in
# integration tests): one node on 127.0.0.1 by default, or a three-node
# cluster on 127.0.0.2, 127.0.0.3 and 127.0.0.4 for quorum and fault tests
# (PARLEY_CASSANDRA_NODES=3).
#
# Usage: scripts/cassandra.sh <command> [N]
#   fetch    resolve cassandra-all and its runtime jars into the cache (skipped
#            when the cache is complete)
#   start    fetch if needed, write the configs, start the nodes one after
#            another in the background, each waiting until its CQL answers
#            before the next starts (a node joining while another is still
#            joining fails); fresh data every start, except that a cluster
#            with a node still running keeps every node's data
#   wait     block until every node's CQL answers SELECT release_version FROM
#            system.local
#   stop     TERM every node from its PID file, KILL after a timeout
#   restart  stop, then start keeping the data (a durability check)
#   status   one line per node: running, paused or not, PID, ports, RSS;
#            exit 0 when every node runs (paused counts), 3 otherwise
#   env      print PARLEY_CQL_HOSTS=<addr>:<port>[,...] for the Go tests
#   logs     print the last 50 log lines of every node
#   nodetool run nodetool against node 1, or node PARLEY_CASSANDRA_NODE (e.g.
#            `nodetool status`, `nodetool flush`)
# Per-node commands, for fault tests (N is 1..PARLEY_CASSANDRA_NODES; each
# exits 0 on success and never prompts):
#   stop-node N    TERM node N (and CONT, in case it is paused), KILL after
#                  the stop timeout; exit 0 also when it was not running
#   start-node N   start node N keeping its data, wait until its CQL answers
#                  and the cluster agrees on the schema again; exit 0 ready
#                  (also when it was running), 1 failed
#   kill-node N    KILL node N (a crash: no drain, no flush); exit 0 also when
#                  it was not running
#   pause-node N   STOP node N: the process freezes with its sockets open, as
#                  a node in a long GC pause or on a hung host; exit 3 when it
#                  is not running
#   resume-node N  CONT node N; exit 3 when it is not running
#
# Environment (all optional):
#   PARLEY_CACHE                  cache root; default $HOME/.cache/parley
#   PARLEY_CASSANDRA_VERSION      cassandra-all version; default 5.0.6
#   PARLEY_CASSANDRA_NODES        1 (default): one node on 127.0.0.1 in the run
#                                 dir. 3: a cluster, node i on 127.0.0.(i+1)
#                                 in <run dir>/node<i>, the first node the
#                                 seed, tokens evenly spaced, hinted handoff on
#   PARLEY_CASSANDRA_NODE         the node `nodetool` talks to; default 1
#   PARLEY_CASSANDRA_DIR          run dir (config, data, logs, PID; the node
#                                 dirs of a cluster); default
#                                 /tmp/parley-cassandra
#   PARLEY_CQL_PORT               CQL native port of every node; default 19042
#   PARLEY_CASSANDRA_STORAGE_PORT internode port of every node; default 17000
#   PARLEY_CASSANDRA_JMX_PORT     local-only JMX port (nodetool), on
#                                 127.0.0.1 for every node: node i uses this
#                                 plus i-1; default 17199 for one node, 17201
#                                 (17201-17203) for a cluster
#   PARLEY_CASSANDRA_HEAP         -Xmx per node; default 1g, 512m in a cluster
#   PARLEY_CASSANDRA_HEAP_MIN     -Xms per node; default the same as -Xmx for
#                                 one node, 256m in a cluster. Cassandra
#                                 mlockall()s its memory at startup (as root
#                                 this succeeds), so the whole -Xms heap is
#                                 resident from the start: 256m cuts the RSS
#                                 by ~0.7 GiB at the cost of heap growth later
#   PARLEY_CASSANDRA_DIRECT       -XX:MaxDirectMemorySize; default 512m
#   PARLEY_CASSANDRA_KEEP_DATA    1 keeps the data dirs on start; default 0
#   PARLEY_CASSANDRA_TIMEOUT      seconds to wait for one node's CQL; default
#                                 180
#   PARLEY_CASSANDRA_STOP_TIMEOUT seconds between TERM and KILL; default 60
#   PARLEY_MAVEN_REPO             Maven local repository (-Dmaven.repo.local)
#   PARLEY_JAVA                   java binary; default: a Java 17 or 11 found
#                                 in JAVA_HOME, PATH or /usr/lib/jvm
#
# Contract for the Go tests: after `start`, PARLEY_CQL_HOSTS (from `env`)
# names every node as host:port; connect with protocol version 4. In a
# cluster, keyspaces need replication factor 3 for quorum claims: with one
# node stopped LOCAL_QUORUM still succeeds, with two it fails (unavailable).
# A test that stops, kills or pauses a node runs this script with the same
# PARLEY_CASSANDRA_NODES and PARLEY_CASSANDRA_DIR (scripts/test-integration.sh
# exports both; ports too, when they are set) and must start or resume the
# node again before it ends.
#
# Memory: one node has an RSS of about 1.5 GiB with the 1g defaults; a cluster
# node about 0.75 GiB at start with 512m/256m, growing to about 1.1 GiB under
# the integration tests (3.3 GiB for three).
#
# Sharing: commands on one node are serialised by a lock file beside its dir
# (<run dir>.lock for one node, <run dir>/node<i>.lock in a cluster). A
# second `start` finds the running nodes and waits for them (no wipe); any
# caller's `stop` stops them for everyone. For a private node or cluster set
# PARLEY_CASSANDRA_DIR and all three ports (a cluster's CQL and storage ports
# may repeat another single node's: they are on other addresses).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATES="$ROOT/scripts/cassandra"

VERSION="${PARLEY_CASSANDRA_VERSION:-5.0.6}"
CACHE_ROOT="${PARLEY_CACHE:-${HOME:-/root}/.cache/parley}"
DIST="$CACHE_ROOT/cassandra-$VERSION"
LIB="$DIST/lib"
MARKER="$DIST/.complete"
NODES="${PARLEY_CASSANDRA_NODES:-1}"
RUN_DIR="${PARLEY_CASSANDRA_DIR:-/tmp/parley-cassandra}"
CQL_PORT="${PARLEY_CQL_PORT:-19042}"
STORAGE_PORT="${PARLEY_CASSANDRA_STORAGE_PORT:-17000}"
if [[ "$NODES" == 1 ]]; then
	JMX_PORT="${PARLEY_CASSANDRA_JMX_PORT:-17199}"
	HEAP="${PARLEY_CASSANDRA_HEAP:-1g}"
	HEAP_MIN="${PARLEY_CASSANDRA_HEAP_MIN:-$HEAP}"
	CLUSTER_NAME=parley-test
	# RING_DELAY: a lone seed has no peers to hear from.
	RING_DELAY_MS=1000
else
	JMX_PORT="${PARLEY_CASSANDRA_JMX_PORT:-17201}"
	HEAP="${PARLEY_CASSANDRA_HEAP:-512m}"
	HEAP_MIN="${PARLEY_CASSANDRA_HEAP_MIN:-256m}"
	# Another name than the single node's: a stray seed list never merges
	# the two.
	CLUSTER_NAME="parley-test-$NODES"
	# Long enough for a joining node to learn the ring from the seed; at
	# 3 s each node came up in under 30 s on two cores.
	RING_DELAY_MS=3000
fi
DIRECT="${PARLEY_CASSANDRA_DIRECT:-512m}"
KEEP_DATA="${PARLEY_CASSANDRA_KEEP_DATA:-0}"
TIMEOUT="${PARLEY_CASSANDRA_TIMEOUT:-180}"
STOP_TIMEOUT="${PARLEY_CASSANDRA_STOP_TIMEOUT:-60}"
FETCH_LOCK="$DIST.lock"
# Set by select_node (the node a command works on), start and start_node.
NODE="" NODE_ADDR="" NODE_DIR="" NODE_JMX="" NODE_LOCK="" TAG=""
PID_FILE="" LOG_FILE="" OUT_FILE="" JAVA_BIN="" LAUNCHED=0

SCRIPT=cassandra.sh
LOCK_WAIT=600
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

check_config() {
	[[ "$NODES" == 1 || "$NODES" == 3 ]] || die "PARLEY_CASSANDRA_NODES '$NODES' must be 1 or 3"
	local p
	for p in "$CQL_PORT" "$STORAGE_PORT" "$JMX_PORT"; do
		if ! [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] || ((p + NODES - 1 > 65535)); then
			die "port '$p' is not a number in 1..65535 (JMX: 1..$((65536 - NODES)))"
		fi
	done
	# The JMX ports of a cluster are JMX_PORT..JMX_PORT+NODES-1.
	if ((CQL_PORT == STORAGE_PORT ||
		(CQL_PORT >= JMX_PORT && CQL_PORT < JMX_PORT + NODES) ||
		(STORAGE_PORT >= JMX_PORT && STORAGE_PORT < JMX_PORT + NODES))); then
		die "CQL ($CQL_PORT), storage ($STORAGE_PORT) and JMX ($(jmx_ports)) ports must differ"
	fi
	[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "PARLEY_CASSANDRA_TIMEOUT '$TIMEOUT' is not a number of seconds"
	[[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "PARLEY_CASSANDRA_STOP_TIMEOUT '$STOP_TIMEOUT' is not a number of seconds"
	case "$RUN_DIR" in
	/?*) ;;
	*) die "PARLEY_CASSANDRA_DIR '$RUN_DIR' must be an absolute path other than /" ;;
	esac
}

# jmx_ports prints the JMX port or range, e.g. 17199 or 17201-17203.
jmx_ports() {
	if [[ "$NODES" == 1 ]]; then
		printf '%s\n' "$JMX_PORT"
	else
		printf '%s-%s\n' "$JMX_PORT" "$((JMX_PORT + NODES - 1))"
	fi
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

# select_node I points the per-node globals at node I (1-based): its address,
# dir, JMX port, files, lock and the prefix of its log lines. One node keeps
# the run dir itself, so everything is where it always was.
select_node() {
	NODE="$1"
	if [[ "$NODES" == 1 ]]; then
		NODE_ADDR=127.0.0.1
		NODE_DIR="$RUN_DIR"
		TAG=""
	else
		NODE_ADDR="127.0.0.$((NODE + 1))"
		NODE_DIR="${RUN_DIR%/}/node$NODE"
		TAG="node$NODE: "
	fi
	NODE_JMX=$((JMX_PORT + NODE - 1))
	PID_FILE="$NODE_DIR/cassandra.pid"
	LOG_FILE="$NODE_DIR/logs/system.log"
	OUT_FILE="$NODE_DIR/logs/stdout.log"
	# Locks live beside, not inside, the dirs they guard: wiping a node dir
	# or swapping the lib dir never removes a lock someone holds.
	NODE_LOCK="${NODE_DIR%/}.lock"
}

# node_arg checks a per-node command's argument and selects that node.
node_arg() {
	local cmd="$1" n="${2:-}"
	if ! [[ "$n" =~ ^[1-9][0-9]?$ ]] || ((n > NODES)); then
		die "$cmd: want a node number 1..$NODES, got '$n' (PARLEY_CASSANDRA_NODES=$NODES)"
	fi
	select_node "$n"
}

# initial_token prints node I's token: -2^63 + (I-1) * floor(2^64 / NODES),
# summed step by step so no intermediate leaves the int64 range.
initial_token() {
	local max=9223372036854775807 i
	local step=$((2 * (max / NODES) + (2 * (max % NODES) + 2) / NODES))
	local t=$((-max - 1))
	for ((i = 1; i < $1; i++)); do
		t=$((t + step))
	done
	printf '%s\n' "$t"
}

# cql_hosts prints every node's host:port, comma-separated.
cql_hosts() {
	local i hosts=""
	for ((i = 1; i <= NODES; i++)); do
		select_node "$i"
		hosts+="${hosts:+,}$NODE_ADDR:$CQL_PORT"
	done
	printf '%s\n' "$hosts"
}

# pid_in FILE YAML prints the PID in FILE if that process is a live
# CassandraDaemon started with the config YAML.
pid_in() {
	[[ -f "$1" ]] || return 1
	local pid
	pid="$(<"$1")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	[[ -r "/proc/$pid/cmdline" ]] || return 1
	# Guard against a recycled PID: the process must be a CassandraDaemon
	# started with this node's config. (A zombie's cmdline is empty.)
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "CassandraDaemon" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
	printf '%s\n' "$pid"
}

# read_pid prints the PID from the selected node's PID file if that process
# is our node.
read_pid() { pid_in "$PID_FILE" "$NODE_DIR/cassandra.yaml"; }

# check_layout stops a command that names the run dir with the wrong node
# count, which would find nothing running and leave the nodes behind.
check_layout() {
	local d="${RUN_DIR%/}"
	if [[ "$NODES" == 1 ]] && pid_in "$d/node1/cassandra.pid" "$d/node1/cassandra.yaml" >/dev/null; then
		die "$RUN_DIR holds a running cluster; set PARLEY_CASSANDRA_NODES to its node count (3)"
	fi
	if [[ "$NODES" != 1 ]] && pid_in "$d/cassandra.pid" "$d/cassandra.yaml" >/dev/null; then
		die "$RUN_DIR holds a running single node; unset PARLEY_CASSANDRA_NODES (or set it to 1)"
	fi
	return 0
}

# proc_state prints the state letter of a process (R, S, T for stopped...),
# nothing if it is gone.
proc_state() {
	local stat
	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
	stat="${stat##*) }"
	printf '%s\n' "${stat%% *}"
}

# gone succeeds once every thread of a process has exited, so its ports are
# free. A zombie counts as exited (a node started by an earlier call is
# nobody's child here), but a JVM whose main thread shows Z while the others
# still run its shutdown does not.
gone() {
	local t st
	for t in "/proc/$1/task/"*/stat; do
		read -r st 2>/dev/null <"$t" || continue
		st="${st##*) }"
		case "${st%% *}" in
		Z | X) ;;
		*) return 1 ;;
		esac
	done
	return 0
}

# port_busy ADDR PORT succeeds if something accepts connections there.
port_busy() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

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

# any_running succeeds if some node of the run dir is running.
any_running() {
	local i
	for ((i = 1; i <= NODES; i++)); do
		select_node "$i"
		read_pid >/dev/null && return 0
	done
	return 1
}

cmd_start() {
	check_config
	check_layout
	JAVA_BIN="$(find_java)"
	cmd_fetch
	local keep="$KEEP_DATA" i
	# A cluster is wiped only as a whole: a node that rejoined with no data
	# but its old address and token would be refused by the others.
	if [[ "$NODES" != 1 && "$keep" != 1 ]] && any_running; then
		log "start: part of the cluster is running; keeping every node's data"
		keep=1
	fi
	local -a started=()
	local t0
	t0="$(now_ms)"
	for ((i = 1; i <= NODES; i++)); do
		# start_node sets LAUNCHED when this call started the node.
		LAUNCHED=0
		if ! start_node "$i" "$keep"; then
			local j
			for j in "${started[@]}"; do
				log "start: stopping node $j, which this start launched"
				stop_node "$j" || true
			done
			exit 1
		fi
		if ((LAUNCHED)); then started+=("$i"); fi
	done
	if [[ "$NODES" != 1 ]]; then
		wait_agreement start || exit 1
		log "start: $NODES nodes ready at $(cql_hosts) in $(secs "$t0" "$(now_ms)")s"
	fi
}

# wait_agreement WHAT waits until every node of the cluster answers and
# they agree on the schema (scripts/cqlwait -agree): a node that was down
# catches up on the schema changes it missed, and a keyspace created before
# that would keep the driver waiting for agreement.
wait_agreement() {
	[[ "$NODES" != 1 ]] || return 0
	local probe hosts t0 out rc=0
	probe="$(build_probe)"
	hosts="$(cql_hosts)"
	t0="$(now_ms)"
	out="$("$probe" -hosts "$hosts" -agree -timeout "${TIMEOUT}s" -quiet 2>&1)" || rc=$?
	if ((rc != 0)); then
		log "$1: the nodes did not agree on the schema: $out"
		return 1
	fi
	log "$1: schema agreed on all $NODES nodes (waited $(secs "$t0" "$(now_ms)")s)"
}

# start_node I KEEP starts node I (KEEP=1 keeps its data) unless it runs,
# then waits for its CQL. On failure it stops the node it launched and
# returns 1. It sets LAUNCHED=1 when it launched the node.
start_node() {
	select_node "$1"
	local keep="$2" pid java="${JAVA_BIN:-}"
	[[ -n "$java" ]] || java="$(find_java)"
	# Under the lock: a concurrent start either finds this node running and
	# waits for it, or (while a stop holds the lock) waits for the stop.
	lock "$NODE_LOCK"
	if pid="$(read_pid)"; then
		unlock
		log "${TAG}start: already running (pid $pid), keeping its data; waiting for CQL"
		wait_node
		return
	fi
	rm -f "$PID_FILE"
	local p busy=""
	for p in "$NODE_ADDR:$CQL_PORT" "$NODE_ADDR:$STORAGE_PORT" "127.0.0.1:$NODE_JMX"; do
		port_busy "${p%:*}" "${p##*:}" && busy+="${busy:+, }$p"
	done
	if [[ -n "$busy" ]]; then
		# Not die: start stops the nodes it launched before this one.
		unlock
		log "${TAG}start: error: $busy already in use (another Cassandra? set PARLEY_CQL_PORT / PARLEY_CASSANDRA_STORAGE_PORT / PARLEY_CASSANDRA_JMX_PORT)"
		return 1
	fi

	# start calls this function in an `if`, where set -e does not apply:
	# every step that can fail says so itself.
	if [[ "$keep" != 1 ]]; then
		rm -rf "$NODE_DIR/data" "$NODE_DIR/commitlog" "$NODE_DIR/saved_caches" \
			"$NODE_DIR/hints" "$NODE_DIR/cdc_raw" "$NODE_DIR/logs" || die "${TAG}start: cannot wipe $NODE_DIR"
	fi
	mkdir -p "$NODE_DIR"/{data,commitlog,saved_caches,hints,cdc_raw,logs,triggers,tmp} || die "${TAG}start: cannot create $NODE_DIR"
	local token="" hints=false dsnitch=false seed=127.0.0.1
	local -a drop=()
	if [[ "$NODES" == 1 ]]; then
		# One node: a random token, as Cassandra picks it.
		drop=(-e '/^initial_token: @INITIAL_TOKEN@$/d')
	else
		token="$(initial_token "$NODE")"
		hints=true
		dsnitch=true
		seed=127.0.0.2
	fi
	sed "${drop[@]}" -e "s|@RUN_DIR@|$NODE_DIR|g" -e "s|@CLUSTER_NAME@|$CLUSTER_NAME|g" \
		-e "s|@LISTEN_ADDRESS@|$NODE_ADDR|g" -e "s|@SEED_ADDRESS@|$seed|g" \
		-e "s|@INITIAL_TOKEN@|$token|g" -e "s|@HINTED_HANDOFF@|$hints|g" \
		-e "s|@DYNAMIC_SNITCH@|$dsnitch|g" \
		-e "s|@STORAGE_PORT@|$STORAGE_PORT|g" -e "s|@CQL_PORT@|$CQL_PORT|g" \
		"$TEMPLATES/cassandra.yaml.tmpl" >"$NODE_DIR/cassandra.yaml" || die "${TAG}start: cannot write $NODE_DIR/cassandra.yaml"
	cp "$TEMPLATES/logback.xml" "$NODE_DIR/logback.xml" || die "${TAG}start: cannot write $NODE_DIR/logback.xml"

	local -a opts
	mapfile -t opts < <(read_options)
	local -a jamms=("$LIB"/jamm-*.jar)
	local jamm="${jamms[0]}"
	[[ -f "$jamm" ]] || die "${TAG}start: no jamm-*.jar in $LIB (incomplete cache? rm -rf $DIST and fetch again)"
	local -a args=(
		"-Xms$HEAP_MIN" "-Xmx$HEAP" "-XX:MaxDirectMemorySize=$DIRECT"
		"${opts[@]}"
		"-Dcassandra.ring_delay_ms=$RING_DELAY_MS"
		# jamm measures object sizes for memtable accounting; Cassandra's
		# cassandra-env.sh always loads it as an agent.
		"-javaagent:$jamm"
		"-Djava.io.tmpdir=$NODE_DIR/tmp"
		"-Dcassandra-foreground=true"
		"-Dcassandra.config=file://$NODE_DIR/cassandra.yaml"
		"-Dcassandra.storagedir=$NODE_DIR"
		"-Dcassandra.logdir=$NODE_DIR/logs"
		"-Dcassandra.triggers_dir=$NODE_DIR/triggers"
		# Local-only JMX (on 127.0.0.1) so `nodetool` works; no remote JMX,
		# no auth.
		"-Dcassandra.jmx.local.port=$NODE_JMX"
		"-Dlogback.configurationFile=$NODE_DIR/logback.xml"
		"-Dparley.cassandra.logfile=$LOG_FILE"
		-cp "$LIB/*"
		org.apache.cassandra.service.CassandraDaemon
	)
	printf '%s\n' "$java" "${args[@]}" >"$NODE_DIR/java.args" || die "${TAG}start: cannot write $NODE_DIR/java.args"

	local what=""
	[[ "$NODES" == 1 ]] || what=" initial_token=$token"
	log "${TAG}start: Cassandra $VERSION on $NODE_ADDR cql=$CQL_PORT storage=$STORAGE_PORT jmx=$NODE_JMX heap=$HEAP_MIN/$HEAP$what dir=$NODE_DIR java=$java"
	local started
	started="$(now_ms)"
	# cd so nothing (hs_err files, stray relative paths) lands in the repo.
	(
		exec {LOCK_FD}>&-
		cd "$NODE_DIR"
		exec "$java" "${args[@]}" </dev/null >>"$OUT_FILE" 2>&1
	) &
	pid=$!
	printf '%s\n' "$pid" >"$PID_FILE"
	LAUNCHED=1
	unlock
	log "${TAG}start: pid $pid, log $LOG_FILE"
	# Pass the PID: if the JVM dies at once it is a zombie child of this
	# shell, which read_pid no longer recognises.
	if ! wait_node "$pid" "$started"; then
		log "${TAG}start: Cassandra did not become ready; stopping it"
		stop_node "$NODE" || true
		LAUNCHED=0
		return 1
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

cmd_wait() {
	check_config
	local i
	for ((i = 1; i <= NODES; i++)); do
		select_node "$i"
		wait_node || return 1
	done
}

# wait_node [PID [STARTED_MS]] waits for the selected node's CQL; with a PID
# (or one from the PID file) it gives up as soon as that process exits.
# STARTED_MS (from start) makes it report the time since the JVM was
# launched.
wait_node() {
	local probe pid="${1:-}" started="${2:-}" t0 t1 out rc=0
	probe="$(build_probe)"
	[[ -n "$pid" ]] || pid="$(read_pid || true)"
	[[ -n "$pid" ]] || log "${TAG}wait: no node of ours in $NODE_DIR (no live PID file); waiting for whatever serves $NODE_ADDR:$CQL_PORT"
	local -a pargs=(-hosts "$NODE_ADDR:$CQL_PORT" -timeout "${TIMEOUT}s" -quiet)
	[[ -n "$pid" ]] && pargs+=(-pid "$pid")
	t0="$(now_ms)"
	out="$("$probe" "${pargs[@]}")" || rc=$?
	t1="$(now_ms)"
	if ((rc != 0)); then
		if ((rc == 3)); then
			log "${TAG}wait: the Cassandra process (pid $pid) exited during startup"
		else
			log "${TAG}wait: CQL on $NODE_ADDR:$CQL_PORT not ready after $(secs "$t0" "$t1")s"
		fi
		show_logs
		return 1
	fi
	local version
	version="$(sed -n 's/.*release_version=\([^ ]*\).*/\1/p' <<<"$out")"
	if [[ -n "$started" ]]; then
		log "${TAG}wait: Cassandra $version ready on $NODE_ADDR:$CQL_PORT, $(secs "$started" "$t1")s after start"
	else
		log "${TAG}wait: Cassandra $version ready on $NODE_ADDR:$CQL_PORT (waited $(secs "$t0" "$t1")s)"
	fi
}

cmd_stop() {
	check_layout
	if [[ "$NODES" == 1 ]]; then
		stop_node 1
		return
	fi
	# All nodes at once: each drains in a few seconds, one after another
	# would add those up.
	local i rc=0
	local -a pids=()
	for ((i = NODES; i >= 1; i--)); do
		stop_node "$i" &
		pids+=($!)
	done
	for i in "${pids[@]}"; do
		wait "$i" || rc=1
	done
	return "$rc"
}

# stop_node I stops node I: TERM (and CONT, so a paused node sees it), KILL
# after STOP_TIMEOUT.
stop_node() {
	select_node "$1"
	local pid
	lock "$NODE_LOCK"
	if ! pid="$(read_pid)"; then
		[[ -f "$PID_FILE" ]] && log "${TAG}stop: stale PID file $PID_FILE (process gone), removing"
		rm -f "$PID_FILE"
		unlock
		log "${TAG}stop: not running"
		return 0
	fi
	log "${TAG}stop: sending TERM to pid $pid"
	kill -TERM "$pid" 2>/dev/null || true
	kill -CONT "$pid" 2>/dev/null || true
	local i
	for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
		gone "$pid" && break
		sleep 0.1
	done
	if ! gone "$pid"; then
		log "${TAG}stop: still running after ${STOP_TIMEOUT}s, sending KILL"
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			gone "$pid" && break
			sleep 0.1
		done
	fi
	# Reap it if this shell started it (start's failure path).
	wait "$pid" 2>/dev/null || true
	rm -f "$PID_FILE"
	unlock
	log "${TAG}stop: stopped"
}

# kill_node I sends KILL to node I and waits until it is gone.
kill_node() {
	select_node "$1"
	local pid i
	lock "$NODE_LOCK"
	if ! pid="$(read_pid)"; then
		rm -f "$PID_FILE"
		unlock
		log "${TAG}kill: not running"
		return 0
	fi
	log "${TAG}kill: sending KILL to pid $pid"
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		gone "$pid" && break
		sleep 0.1
	done
	gone "$pid" || { unlock; die "${TAG}kill: pid $pid still there 10s after KILL"; }
	rm -f "$PID_FILE"
	unlock
	log "${TAG}kill: killed"
}

# signal_node I SIG VERB sends SIG (STOP or CONT) to node I; exit 3 when
# it is not running.
signal_node() {
	select_node "$1"
	local sig="$2" verb="$3" pid
	lock "$NODE_LOCK"
	if ! pid="$(read_pid)"; then
		unlock
		log "${TAG}$verb: not running"
		exit 3
	fi
	kill "-$sig" "$pid"
	unlock
	log "${TAG}$verb: sent $sig to pid $pid (state $(proc_state "$pid"))"
}

cmd_status() {
	check_layout
	local i pid rss state rc=0
	for ((i = 1; i <= NODES; i++)); do
		select_node "$i"
		if pid="$(read_pid)"; then
			rss="$(awk '/^VmRSS/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || echo '?')"
			local cql="not answering"
			state=running
			[[ "$(proc_state "$pid")" == T ]] && state=paused
			port_busy "$NODE_ADDR" "$CQL_PORT" && cql="accepting connections"
			echo "${TAG}$state pid=$pid rss=$rss cql=$NODE_ADDR:$CQL_PORT ($cql) storage=$STORAGE_PORT jmx=$NODE_JMX dir=$NODE_DIR"
		else
			echo "${TAG}not running (dir=$NODE_DIR)"
			rc=3
		fi
	done
	return "$rc"
}

cmd_env() {
	check_config
	echo "PARLEY_CQL_HOSTS=$(cql_hosts)"
}

cmd_logs() {
	local i
	for ((i = 1; i <= NODES; i++)); do
		select_node "$i"
		show_logs
	done
}

cmd_nodetool() {
	check_config
	local java n="${PARLEY_CASSANDRA_NODE:-1}"
	node_arg nodetool "$n"
	java="$(find_java)"
	cache_complete || die "nodetool: no complete cache in $LIB; run fetch first"
	local -a opts
	mapfile -t opts < <(read_options)
	mkdir -p "$NODE_DIR/logs"
	# nodetool keeps a command history under user.home/.cassandra.
	"$java" -Xmx256m "${opts[@]}" -cp "$LIB/*" "-Duser.home=$NODE_DIR" \
		"-Dlogback.configurationFile=$TEMPLATES/logback.xml" "-Dparley.cassandra.logfile=$NODE_DIR/logs/nodetool.log" \
		org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p "$NODE_JMX" "$@"
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
	logs) cmd_logs ;;
	nodetool) cmd_nodetool "$@" ;;
	stop-node | start-node | kill-node | pause-node | resume-node)
		check_config
		check_layout
		node_arg "$cmd" "${1:-}"
		case "$cmd" in
		stop-node) stop_node "$NODE" ;;
		start-node)
			JAVA_BIN="$(find_java)"
			cmd_fetch
			start_node "$NODE" 1
			wait_agreement start-node
			;;
		kill-node) kill_node "$NODE" ;;
		pause-node) signal_node "$NODE" STOP pause ;;
		resume-node) signal_node "$NODE" CONT resume ;;
		esac
		;;
	-h | --help | help | "")
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
		[[ -n "$cmd" ]]
		;;
	*) die "unknown command '$cmd' (try: fetch start wait stop restart status env logs nodetool stop-node start-node kill-node pause-node resume-node)" ;;
	esac
}

main "$@"
