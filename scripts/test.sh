#!/usr/bin/env bash
# The test command: installs what is missing (packages, the MySQL chroot), then formatting,
# lints, unit, CLI and e2e tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/mysql-chroot.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
