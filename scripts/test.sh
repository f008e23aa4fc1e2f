#!/usr/bin/env bash
# The test command: installs what is missing, then formatting, lints, unit, CLI and e2e tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
