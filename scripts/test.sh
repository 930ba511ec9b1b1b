#!/usr/bin/env bash
# The test command: installs and starts the real broker (tansu, cached), checks formatting and
# lints, runs every test (unit and end-to-end) in release mode, then the benchmark harness at its
# smoke size (about a minute; it writes nothing; DENORM_SKIP_BENCH_SMOKE=1 leaves it out).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/broker.sh start memory >/dev/null
export DENORM_TEST_BROKERS=${DENORM_TEST_BROKERS:-127.0.0.1:${DENORM_BROKER_PORT:-19092}}

cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release "$@"
if [ -z "${DENORM_SKIP_BENCH_SMOKE:-}" ]; then
  scripts/bench.sh smoke > /dev/null
fi
