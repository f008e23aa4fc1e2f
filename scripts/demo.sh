#!/usr/bin/env bash
# The demo: a simulated 3-pod StatefulSet on this machine with the agent at work.
# Usage: scripts/demo.sh [mariadb|mariadb-11.8|mysql]   (default mariadb)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
case "${1:-mariadb}" in
  mysql) scripts/db-chroot.sh mysql-sid >/dev/null ;;
  mariadb-11.8) scripts/db-chroot.sh mariadb-trixie >/dev/null ;;
esac
cargo build --locked --bin mysql-sts-agent --example demo
exec target/debug/examples/demo "${1:-mariadb}" target/debug/mysql-sts-agent
