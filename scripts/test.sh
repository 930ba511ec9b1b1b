#!/usr/bin/env bash
# The test command: installs and starts the real broker (tansu, cached), checks formatting and
# lints, and runs every test (unit and end-to-end) in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/broker.sh start memory >/dev/null
export DENORM_TEST_BROKERS=${DENORM_TEST_BROKERS:-127.0.0.1:${DENORM_BROKER_PORT:-19092}}

cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release "$@"
