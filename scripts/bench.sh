#!/usr/bin/env bash
# Benchmarks (numbers recorded in README.md): clone throughput, probe latency, sidecar memory.
# Usage: scripts/bench.sh [mariadb|mariadb-11.8|mysql]   (default mariadb; BENCH_MB sets the data size)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
case "${1:-mariadb}" in
  mysql) scripts/db-chroot.sh mysql-sid >/dev/null ;;
  mariadb-11.8) scripts/db-chroot.sh mariadb-trixie >/dev/null ;;
esac
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --locked --release --bin mysql-sts-agent --example bench
exec target/release/examples/bench "${1:-mariadb}" target/release/mysql-sts-agent
