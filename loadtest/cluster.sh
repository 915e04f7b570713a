#!/usr/bin/env bash
# The whole-cluster scenario of services/sluice/tests/cluster.rs at load
# (issue #12 item 6, long version): every role as a real process on a
# three-broker Kafka cluster and Cassandra, a sender killed, one joining, a
# broker lost and admin changes, then every message checked.
#
#   loadtest/cluster.sh [MESSAGES] [PER_MINUTE_PER_IP]    default 100000 and 6000
#
# Needs the servers of the test command running (deploy/servers/kafka.sh,
# cassandra.sh and kafka-cluster.sh start). Prints what it measured; copy
# the "whole cluster:" line into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export SLUICE_CLUSTER_MESSAGES="${1:-100000}"
export SLUICE_CLUSTER_PER_MINUTE="${2:-6000}"
export SLUICE_KAFKA_CLUSTER="${SLUICE_KAFKA_CLUSTER:-$(deploy/servers/kafka-cluster.sh brokers)}"
export SLUICE_CASSANDRA="${SLUICE_CASSANDRA:-127.0.0.1:9042}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
echo "method: $SLUICE_CLUSTER_MESSAGES messages, $SLUICE_CLUSTER_PER_MINUTE per minute per IP, 6 IPs; machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB"
cargo test --release -p sluice --test cluster -- --nocapture 2>&1 | grep -E "whole cluster:|test result|panicked|assert"
