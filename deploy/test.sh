#!/usr/bin/env bash
# The Sluice test command. From a fresh clone on a bare machine it:
#   1. installs what is missing (apt packages, the Maven artifacts of Kafka and
#      Cassandra; Rust 1.95 with rustfmt and clippy must already be installed),
#   2. starts Apache Kafka 4.x (one broker, and a three-broker cluster for the
#      broker-loss test) and Apache Cassandra 5.0 on loopback unless they
#      already run (in the background, while the code compiles),
#   3. runs cargo fmt --check, cargo clippy -D warnings and every test,
#   4. stops the servers it started, and only those.
#
# Reuses ~/.cache/sluice/target (override with CARGO_TARGET_DIR) and ~/.m2
# between runs. Long scenarios, soaks and benchmarks are not here: see loadtest/.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
export SLUICE_KAFKA_PORT="${SLUICE_KAFKA_PORT:-9092}"
export SLUICE_CASSANDRA_PORT="${SLUICE_CASSANDRA_PORT:-9042}"
export SLUICE_KAFKA_CLUSTER_PORT="${SLUICE_KAFKA_CLUSTER_PORT:-19092}"
export SLUICE_KAFKA_BROKERS="127.0.0.1:$SLUICE_KAFKA_PORT"
export SLUICE_CASSANDRA="127.0.0.1:$SLUICE_CASSANDRA_PORT"
export SLUICE_KAFKA_CLUSTER="$("deploy/servers/kafka-cluster.sh" brokers)"
LOGS="$(mktemp -d)"

step() { printf '\n==> %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install_missing() {
  local missing=()
  command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v python3 >/dev/null || missing+=(python3)
  # deploy/check-manifests.sh validates the manifests from a venv.
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  command -v cc >/dev/null || missing+=(build-essential)
  command -v make >/dev/null || missing+=(make)
  command -v perl >/dev/null || missing+=(perl)
  command -v curl >/dev/null || missing+=(curl)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  # OpenSSL's libcrypto signs DKIM (openssl-sys links the system library).
  dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
  # Postfix's smtp-sink is the receiver nobody here wrote (dev_smtp_sink.rs);
  # the package's own mail system is left unconfigured and stopped.
  command -v smtp-sink >/dev/null || missing+=(postfix)
  # The Node.js webhook verifier of docs/examples is run by a test.
  command -v node >/dev/null || missing+=(nodejs)
  if [ "${#missing[@]}" -gt 0 ]; then
    step "installing apt packages: ${missing[*]}"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
  command -v cargo >/dev/null || { echo "cargo not found: install Rust 1.95 (rustup) first" >&2; exit 1; }
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
}

STARTED=()
start_server() {
  local name="$1" port="$2" after="${3:-}"
  if port_open "$port"; then
    echo "$name already listens on 127.0.0.1:$port; using it and leaving it running"
    return 0
  fi
  STARTED+=("$name")
  local first=""
  # Servers sharing jars start one after the other, so only one fetches them.
  [ -n "$after" ] && [ -f "$LOGS/$after.start.pid" ] && first="$(cat "$LOGS/$after.start.pid")"
  (
    if [ -n "$first" ]; then
      while kill -0 "$first" 2>/dev/null; do sleep 1; done
    fi
    exec "$ROOT/deploy/servers/$name.sh" start
  ) >"$LOGS/$name.start.log" 2>&1 &
  echo $! >"$LOGS/$name.start.pid"
}

wait_server() {
  local name="$1"
  [ -f "$LOGS/$name.start.pid" ] || return 0
  if ! wait "$(cat "$LOGS/$name.start.pid")"; then
    cat "$LOGS/$name.start.log" >&2
    echo "could not start $name (log above)" >&2
    exit 1
  fi
  cat "$LOGS/$name.start.log"
}

cleanup() {
  local name
  for name in "${STARTED[@]}"; do
    # A start still in progress must finish before its server can be stopped.
    wait "$(cat "$LOGS/$name.start.pid")" 2>/dev/null || true
    "$ROOT/deploy/servers/$name.sh" stop || true
  done
  rm -rf "$LOGS"
}
trap cleanup EXIT

step "checking the machine"
install_missing

step "starting Kafka, a three-broker Kafka cluster and Cassandra in the background"
start_server kafka "$SLUICE_KAFKA_PORT"
start_server kafka-cluster "$SLUICE_KAFKA_CLUSTER_PORT" kafka
start_server cassandra "$SLUICE_CASSANDRA_PORT"

step "deployment assets (deploy/check-manifests.sh)"
bash deploy/check-manifests.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building tests"
cargo test --workspace --locked --no-run

step "waiting for Kafka, the Kafka cluster and Cassandra"
wait_server kafka
wait_server kafka-cluster
wait_server cassandra

step "cargo test, two test binaries at a time (Kafka at $SLUICE_KAFKA_BROKERS, cluster at $SLUICE_KAFKA_CLUSTER, Cassandra at $SLUICE_CASSANDRA)"
# Every test binary and the doc tests, as `cargo test --workspace` runs
# them, but two binaries at once (deploy/run-tests.py says why).
python3 deploy/run-tests.py --jobs "${SLUICE_TEST_JOBS:-2}"
