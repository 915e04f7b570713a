#!/usr/bin/env bash
# Sluice beside Postfix in one run (issue #14 item 2): installs Postfix from
# apt when it is missing (smtp-sink, smtp-source and the relay itself), builds
# release binaries, and runs `peer-bench` (method in
# loadtest/bench/src/peer_bench.rs). Arguments go to peer-bench, e.g.
#   loadtest/peer.sh --sizes 10240 --messages 5000 --rounds 1
# Needs root (Postfix's master runs as root). Adds the bench's Postfix
# configuration directory to /etc/postfix/main.cf's
# alternate_config_directories; does not start the system's Postfix.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v smtp-sink >/dev/null || ! command -v smtp-source >/dev/null; then
  echo "peer.sh: installing postfix from apt (no local delivery configured)"
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
fi
# Installed with "No configuration", Postfix has no main.cf, and postconf
# (which the bench uses to allow its own configuration directory) needs one.
[ -f /etc/postfix/main.cf ] || touch /etc/postfix/main.cf
command -v openssl >/dev/null || { echo "peer.sh: openssl is needed for the DKIM key" >&2; exit 1; }

target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --locked -p sluice -p sluice-loadtest --bin sluice --bin peer-bench
exec "$target/release/peer-bench" --sluice "$target/release/sluice" "$@"
