#!/usr/bin/env bash
# Many data products in one job (issue 23): 1, 10 and 100 products over the same generated
# GitHub topics, each writing its own output topic, from empty output topics until caught up
# (start-up, wall and CPU time, peak RSS), then the 100 again over their full output topics (a
# restart: nothing to write). Prints a Markdown table.
#
#   scripts/bench-products.sh [SCALE] [CHANGES]     (default 10000 and 6000: about 93k records)
#
# Products: variants of the two GitHub products (even ones user_profile, odd ones repo_card),
# each with its own name and output topic and one of five root field lists, all over the same
# topics. DENORM_BIN=path runs that binary instead of building target/release/denorm;
# BENCH_WORKERS sets -w (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=${1:-10000}
CHANGES=${2:-6000}
WORKERS=${BENCH_WORKERS:-2}
BROKERS=$(scripts/broker.sh start memory)
if [ -n "${DENORM_BIN:-}" ]; then
  BIN=$DENORM_BIN
else
  cargo build --release --quiet
  BIN=target/release/denorm
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PREFIX="bp$(date +%s)"

# The root fields of variant I (five per base product).
root_fields() {
  local i=$1
  if (( i % 2 == 0 )); then
    case $(( (i / 2) % 5 )) in
      0) echo '["email", "username"]' ;;
      1) echo '["username", "email"]' ;;
      2) echo '["email", "username", "registered_at"]' ;;
      3) echo '["email", "id", "username"]' ;;
      4) echo '["username", "registered_at", "email"]' ;;
    esac
  else
    case $(( (i / 2) % 5 )) in
      0) echo '["owner", "name", "description", "star_count", "fork_count"]' ;;
      1) echo '["name", "owner", "description", "star_count", "fork_count"]' ;;
      2) echo '["owner", "name", "description", "star_count", "fork_count", "created_at"]' ;;
      3) echo '["owner", "name", "star_count", "fork_count"]' ;;
      4) echo '["owner", "name", "description", "updated_at"]' ;;
    esac
  fi
}

# variant I RUN: the product file of variant I, writing to a topic of run RUN.
variant() {
  local i=$1 run=$2 base
  if (( i % 2 == 0 )); then base=dataflows/github_user_profile.toml; else base=dataflows/github_repo_card.toml; fi
  sed -e "s/\"github\./\"$PREFIX./" \
      -e "s/^name = \"github_\(.*\)\"/name = \"v${i}_\1\"/" \
      -e "s/^output_topic = \"$PREFIX\.\(.*\)\"/output_topic = \"$PREFIX.$run.v$i.\1\"/" "$base" |
    awk -v fields="$(root_fields "$i")" '!done && /^fields = / { print "fields = " fields; done = 1; next } { print }'
}

variant 0 gen > "$WORK/gen.toml"
RECORDS=$("$BIN" --log warn gen "$WORK/gen.toml" --brokers "$BROKERS" --scale "$SCALE" --changes "$CHANGES" --seed 1 --partitions 2 | awk '{print $2}')

# measure FOLDER: "peak_mb cpu_s wall_s caught_up_s documents" of one job over its products.
measure() {
  /usr/bin/time -f "%M %U %S %e" -o "$WORK/time" \
    "$BIN" --log info --log-format json run "$1" --brokers "$BROKERS" --exit-when-caught-up \
    --watch-interval 0 -w "$WORKERS" 2> "$WORK/log" >/dev/null
  local caught written
  caught=$(jq -r 'select(.fields.message | startswith("job caught up")) | .fields.seconds' "$WORK/log" | head -n 1)
  written=$(jq -r 'select(.fields.message | startswith("stopped")) | .fields.documents_written' "$WORK/log" | head -n 1)
  awk -v caught="${caught:-?}" -v written="${written:-?}" '{ printf "%d %.1f %.1f %s %s\n", $1 / 1024, $2 + $3, $4, caught, written }' "$WORK/time"
}

echo "| products | output topics | peak RSS (MB) | CPU (s) | wall (s) | caught up after (s) | records written |"
echo "|---|---|---|---|---|---|---|"
for n in 1 10 100; do
  run="p$n"
  mkdir -p "$WORK/$run"
  for i in $(seq 0 $((n - 1))); do variant "$i" "$run" > "$WORK/$run/v$i.toml"; done
  read -r mb cpu wall caught written < <(measure "$WORK/$run")
  echo "| $n | empty | $mb | $cpu | $wall | $caught | $written |"
done
read -r mb cpu wall caught written < <(measure "$WORK/p100")
echo "| 100 | full (a restart) | $mb | $cpu | $wall | $caught | $written |"
echo
echo "Input: $RECORDS records (scale $SCALE, $CHANGES changes, seed 1), 2 partitions per topic, -w $WORKERS, broker $BROKERS."
