#!/usr/bin/env bash
# The benchmarks (issue 11): the release build of the agent on the test harness's pods; writes
# BENCHMARKS.md and docs/bench/*.png (README, "Benchmarks").
# Usage: scripts/bench.sh [--sizes 0.25,0.5,1,2] [--ready-sizes 140] [--rounds 3]
#   [--only clone_throughput,time_to_ready,mysql_clone,scale,probe_cost,footprint,compression]
#   [--out DIR] [--smoke]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
# Measurement 3 runs MySQL 9.7 from its chroot.
scripts/db-chroot.sh mysql-sid >/dev/null
exec cargo bench --locked --bench provisioning -- "$@"
