#!/usr/bin/env bash
# How fast one webhook dispatcher posts (issue #15 item 6): builds release
# binaries and runs `webhook-bench` (method in
# loadtest/bench/src/webhook_bench.rs). Kafka must be running
# (deploy/servers/kafka.sh start). Arguments go to webhook-bench, e.g.
#   loadtest/webhooks.sh --events 20000 --concurrency 32
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --locked -p sluice -p sluice-loadtest --bin sluice --bin webhook-bench
exec "$target/release/webhook-bench" --sluice "$target/release/sluice" "$@"
