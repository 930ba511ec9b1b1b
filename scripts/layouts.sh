#!/usr/bin/env bash
# Runs one generated dataset through every worker/process layout (-w 1, -w 2, -w 4, -n 2 -w 2),
# each into its own output topic, and verifies each: verify compares each document, as parsed
# JSON, with the same independently computed documents, so all layouts passing means they all
# wrote the same documents (tests/verify.rs also compares their bytes). Usage:
# scripts/layouts.sh [SCALE] [CHANGES]   (needs a broker: scripts/broker.sh start)
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-10000}
changes=${2:-20000}
brokers=${DENORM_BROKERS:-127.0.0.1:${DENORM_BROKER_PORT:-19092}}
cargo build --release -q
bin=target/release/denorm
dir=$(mktemp -d)
prefix="layouts$$"
for layout in w1 w2 w4 n2w2; do
  sed -e "s/\"github\./\"$prefix./" -e "s/\"$prefix.user_profile\"/\"$prefix.out_$layout\"/" \
    dataflows/github_user_profile.toml > "$dir/$layout.toml"
done
echo "== denorm gen --scale $scale --changes $changes --seed 42"
$bin --log warn gen "$dir/w1.toml" --brokers "$brokers" --scale "$scale" --changes "$changes" --seed 42 --partitions 2
run() { $bin --log warn run "$dir/$1.toml" --brokers "$brokers" --exit-when-caught-up "${@:2}"; }
echo "== -w 1";  run w1 -w 1
echo "== -w 2";  run w2 -w 2
echo "== -w 4";  run w4 -w 4
echo "== -n 2 -w 2 (two processes on localhost)"
printf '127.0.0.1:%s\n127.0.0.1:%s\n' $((20000 + $$ % 5000)) $((25000 + $$ % 5000)) > "$dir/hosts"
run n2w2 -w 2 -n 2 -p 1 -h "$dir/hosts" > /dev/null & second=$!
run n2w2 -w 2 -n 2 -p 0 -h "$dir/hosts" > /dev/null
wait $second
status=0
for layout in w1 w2 w4 n2w2; do
  echo "== verify $layout"
  $bin --log warn verify "$dir/$layout.toml" --brokers "$brokers" || status=1
done
rm -rf "$dir"
exit $status
