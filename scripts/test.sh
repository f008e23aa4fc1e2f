#!/usr/bin/env bash
# The test command: installs what is missing (packages, the database chroots of MariaDB 11.8
# and MySQL 9.7, cargo-deny, the Python checkers), then formatting, lints, cargo deny
# (advisories, licenses, bans, sources), unit, CLI and e2e tests, the benchmarks' smoke run, then
# the checks of what users deploy (Dockerfile, manifests, the glibc the binary needs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/db-chroot.sh mysql-sid >/dev/null
scripts/db-chroot.sh mariadb-trixie >/dev/null
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
scripts/supply-chain.sh
cargo test --locked --all-targets
# The benchmarks still work: one 16 MiB clone per contender into target/bench-smoke, on the
# debug build the tests just made (timings are not checked, only that there are some).
cargo test --locked --bench provisioning -- --smoke
scripts/check-deploy.sh target/debug/mysql-sts-agent
