#!/usr/bin/env bash
# Integration tests against real services that this script starts itself:
# a single-node Apache Cassandra 5.0 (the CQL stand-in for ScyllaDB) and a
# single-node Kafka 4 (KRaft), both fetched from Maven Central on first use
# (scripts/cassandra.sh, scripts/kafka.sh), and Debian's redis-server
# (scripts/redis.sh installs it when missing). Runs the storage conformance
# suite on the CQL backend, the directory and Kafka suites, and the
# end-to-end, crash, chaos and fleet tests with the CQL backend selected.
# Stops what it started.
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
# at once on two cores take about as long as the slower one alone.
bash scripts/kafka.sh start > "$PARLEY_KAFKA_DIR.start.log" 2>&1 &
kafka_pid=$!
bash scripts/cassandra.sh start
if ! wait "$kafka_pid"; then
  cat "$PARLEY_KAFKA_DIR.start.log"
  echo "test-integration: Kafka did not start" >&2
  exit 1
fi
cat "$PARLEY_KAFKA_DIR.start.log"; rm -f "$PARLEY_KAFKA_DIR.start.log"
# shellcheck disable=SC2046
export $(bash scripts/cassandra.sh env) $(bash scripts/kafka.sh env) $(bash scripts/redis.sh env)
echo "test-integration: Cassandra, Kafka and Redis ready after $(( $(date +%s) - start ))s at $PARLEY_CQL_HOSTS, $PARLEY_KAFKA_BROKERS, $PARLEY_REDIS_ADDR"

# Client TLS: e2e/tls_test.go starts its own HAProxy (scripts/haproxy.sh,
# private dir and port) in front of connsrv.
bash scripts/haproxy.sh install
export PARLEY_HAPROXY=1

go test -count=1 ./storage/scylla/... ./internal/directory/... ./internal/events/...
PARLEY_E2E_STORE=cql go test -count=1 ./e2e/...
