#!/usr/bin/env bash
# Integration tests against real services that this script starts itself:
# a single-node Apache Cassandra 5.0 (the CQL stand-in for ScyllaDB), fetched
# from Maven Central on first use (scripts/cassandra.sh). Runs the storage
# conformance suite on the CQL backend and the end-to-end, crash and chaos
# tests with the CQL backend selected. Stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

# Java 17 and Maven: preinstalled on our machines; installed here if not.
if ! ls /usr/lib/jvm/*17* >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  echo "test-integration: installing Java 17 and Maven"
  if [ "$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q openjdk-17-jre-headless maven
  else sudo apt-get update -q && sudo apt-get install -y -q openjdk-17-jre-headless maven; fi
fi

PARLEY_CASSANDRA_DIR=$(mktemp -d /tmp/parley-it-cassandra.XXXXXX)
export PARLEY_CASSANDRA_DIR
cleanup() {
  bash scripts/cassandra.sh stop || true
  rm -rf "$PARLEY_CASSANDRA_DIR"
}
trap cleanup EXIT

start=$(date +%s)
bash scripts/cassandra.sh start
# shellcheck disable=SC2046
export $(bash scripts/cassandra.sh env)
echo "test-integration: Cassandra ready after $(( $(date +%s) - start ))s at $PARLEY_CQL_HOSTS"

go test -count=1 ./storage/scylla/...
PARLEY_E2E_STORE=cql go test -count=1 ./e2e/...
