#!/usr/bin/env bash
# The demo: a simulated 3-pod StatefulSet on this machine with the agent at work.
# Usage: scripts/demo.sh [mariadb|mysql]   (default mariadb)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
if [ "${1:-mariadb}" = mysql ]; then scripts/db-chroot.sh mysql-sid >/dev/null; fi
cargo build --locked --bin mysql-sts-agent --example demo
exec target/debug/examples/demo "${1:-mariadb}" target/debug/mysql-sts-agent
