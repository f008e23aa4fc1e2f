#!/usr/bin/env bash
# Benchmarks (numbers recorded in README.md): clone throughput, probe latency, sidecar memory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --locked --release --bin mysql-sts-agent --example bench
exec target/release/examples/bench target/release/mysql-sts-agent
