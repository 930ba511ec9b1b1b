#!/usr/bin/env bash
# The test command: installs and starts the real broker (tansu, cached), checks formatting and
# lints (also of the fault-injection build), runs every test (unit and end-to-end, the verifier
# crate's too) in release mode, then tests/verify_catches.rs on an engine built with deliberate
# bugs (--features fault-injection: cargo keeps both builds, so switching features does not
# rebuild the dependencies), then the benchmark harness at its smoke size (about a minute; it
# writes nothing; DENORM_SKIP_BENCH_SMOKE=1 leaves it out).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/broker.sh start memory >/dev/null
export DENORM_TEST_BROKERS=${DENORM_TEST_BROKERS:-127.0.0.1:${DENORM_BROKER_PORT:-19092}}

cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
cargo clippy --release --all-targets --features fault-injection -- -D warnings
cargo test --release "$@"
cargo test --release --features fault-injection --test verify_catches
# target/release/denorm is the fault-injection build now: put the normal one back.
cargo build --release -q
if [ -z "${DENORM_SKIP_BENCH_SMOKE:-}" ]; then
  scripts/bench.sh smoke > /dev/null
fi
