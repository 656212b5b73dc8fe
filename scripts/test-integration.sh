#!/usr/bin/env bash
# Integration tests against real services that this script starts itself:
# a three-node Apache Cassandra 5.0 cluster on 127.0.0.2-4 (the CQL stand-in
# for ScyllaDB) and a single-node Kafka 4 (KRaft), both fetched from Maven
# Central on first use (scripts/cassandra.sh, scripts/kafka.sh), and Debian's
# redis-server (scripts/redis.sh installs it when missing). Runs the storage
# conformance suite on the CQL backend, the directory and Kafka suites, and
# the end-to-end, crash, chaos and fleet tests with the CQL backend selected,
# all on the one cluster. Stops what it started.
#
# The tests see PARLEY_CQL_HOSTS (all three nodes), PARLEY_CQL_REPLICATION
# (3: the replication factor of their keyspaces), PARLEY_CASSANDRA_NODES
# and PARLEY_CASSANDRA_DIR, so a fault test can run
# `bash scripts/cassandra.sh stop-node 2` (start-node, kill-node, pause-node,
# resume-node) on the cluster; it must bring the node back before it ends.
# PARLEY_CASSANDRA_NODES=1 in the environment runs on a single node instead.
#
# Memory (two cores, 24 GiB): each Cassandra node starts at about 0.75 GiB
# RSS (512m heap, 256m at start) and grows to about 1.1 GiB by the end of
# the run; Kafka takes about 0.4 GiB, Redis little, the Go tests and the
# parley processes they start well under 1 GiB: about 5 GiB in all.
#
# Time: the cluster is CPU-bound on two cores, and every schema change waits
# for the three nodes to agree (about 1-2 s a statement against 0.3-0.7 s on
# one node). The CQL suites, which create a keyspace per test, take about
# four times as long as on one node, so go test gets more than its default
# 10-minute limit per package.
set -euo pipefail
cd "$(dirname "$0")/.."

# Java 17 and Maven: preinstalled on our machines; installed here if not.
if ! ls /usr/lib/jvm/*17* >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  echo "test-integration: installing Java 17 and Maven"
  if [ "$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q openjdk-17-jre-headless maven
  else sudo apt-get update -q && sudo apt-get install -y -q openjdk-17-jre-headless maven; fi
fi

PARLEY_CASSANDRA_DIR=$(mktemp -d /tmp/parley-it-cassandra.XXXXXX)
PARLEY_KAFKA_DIR=$(mktemp -d /tmp/parley-it-kafka.XXXXXX)
PARLEY_REDIS_DIR=$(mktemp -d /tmp/parley-it-redis.XXXXXX)
export PARLEY_CASSANDRA_DIR PARLEY_KAFKA_DIR PARLEY_REDIS_DIR
export PARLEY_CASSANDRA_NODES="${PARLEY_CASSANDRA_NODES:-3}"
# The CQL tests create their keyspaces with this replication factor (1 when
# unset): one replica per node, so LOCAL_QUORUM needs two of the three and a
# fault test can stop one node.
export PARLEY_CQL_REPLICATION="${PARLEY_CQL_REPLICATION:-$PARLEY_CASSANDRA_NODES}"
# Ports of this run's services (the fleet tests stop and start Redis with
# the same variables).
export PARLEY_REDIS_PORT="${PARLEY_REDIS_PORT:-16379}"
export PARLEY_KAFKA_PORT="${PARLEY_KAFKA_PORT:-19092}" PARLEY_KAFKA_CONTROLLER_PORT="${PARLEY_KAFKA_CONTROLLER_PORT:-19093}"
cleanup() {
  bash scripts/redis.sh stop || true
  bash scripts/kafka.sh stop || true
  bash scripts/cassandra.sh stop || true
  rm -rf "$PARLEY_CASSANDRA_DIR" "$PARLEY_KAFKA_DIR" "$PARLEY_REDIS_DIR"
}
trap cleanup EXIT

start=$(date +%s)
bash scripts/redis.sh start
# Kafka starts in the background while Cassandra starts: two JVMs warming up
# at once on two cores take about as long as the slower one alone. The
# Cassandra nodes start one after another (each joins once the one before
# answers CQL).
bash scripts/kafka.sh start > "$PARLEY_KAFKA_DIR.start.log" 2>&1 &
kafka_pid=$!
cassandra_start=$(date +%s)
bash scripts/cassandra.sh start
cassandra_ready=$(( $(date +%s) - cassandra_start ))
if ! wait "$kafka_pid"; then
  cat "$PARLEY_KAFKA_DIR.start.log"
  echo "test-integration: Kafka did not start" >&2
  exit 1
fi
cat "$PARLEY_KAFKA_DIR.start.log"; rm -f "$PARLEY_KAFKA_DIR.start.log"
# shellcheck disable=SC2046
export $(bash scripts/cassandra.sh env) $(bash scripts/kafka.sh env) $(bash scripts/redis.sh env)
echo "test-integration: Cassandra ($PARLEY_CASSANDRA_NODES node(s)) ready after ${cassandra_ready}s at $PARLEY_CQL_HOSTS"
echo "test-integration: Cassandra, Kafka and Redis ready after $(( $(date +%s) - start ))s at $PARLEY_CQL_HOSTS, $PARLEY_KAFKA_BROKERS, ${PARLEY_REDIS_ADDR:-}"

# Client TLS: e2e/tls_test.go starts its own HAProxy (scripts/haproxy.sh,
# private dir and port) in front of connsrv.
bash scripts/haproxy.sh install
export PARLEY_HAPROXY=1

go test -count=1 -timeout 20m ./storage/scylla/... ./adapters/directory/... ./adapters/events/...
contract_report=$(mktemp)
PARLEY_CONTRACT_REPORT=$contract_report PARLEY_E2E_STORE=scylla go test -count=1 -timeout 20m ./e2e/...
cat "$contract_report" # how many frames and responses e2e checked against api/*.json
rm -f "$contract_report"
