#!/usr/bin/env bash
# The demo: a simulated 3-pod MariaDB StatefulSet on this machine with the agent at work.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --locked --bin mysql-sts-agent --example demo
exec target/debug/examples/demo target/debug/mysql-sts-agent
