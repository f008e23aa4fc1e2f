#!/usr/bin/env bash
# Benchmarks (numbers recorded in README.md): clone throughput, probe latency, sidecar memory.
# Usage: scripts/bench.sh [mariadb|mysql]   (default mariadb; BENCH_MB sets the data size)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
if [ "${1:-mariadb}" = mysql ]; then scripts/db-chroot.sh mysql-sid >/dev/null; fi
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --locked --release --bin mysql-sts-agent --example bench
exec target/release/examples/bench "${1:-mariadb}" target/release/mysql-sts-agent
