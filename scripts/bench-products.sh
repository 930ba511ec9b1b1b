#!/usr/bin/env bash
# Memory and CPU of many data products over the same tables: 1, 2 and 10 products in one job
# against the same products run as separate jobs (issue 10). Prints Markdown tables.
#
#   scripts/bench-products.sh [SCALE]        (default 10000: the S size of BENCHMARKS.md)
#
# Products: variants of the two GitHub products (even ones user_profile, odd ones repo_card),
# each with its own name and output topic, all over the same generated topics. Variant i has its
# own root: a different subset or order of the root's fields (five per base product), so each
# variant builds its own documents and only the nested relations below the root are equal (and
# shared) between variants of the same base product. A second, shorter table runs identical
# copies (differing only by name and output topic) in one job. Each run starts on empty output
# topics and stops when caught up (--exit-when-caught-up).
#
# DENORM_BIN=path runs that binary instead of building target/release/denorm (to measure an
# older build on the same data).
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=${1:-10000}
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

# The root fields of variant I (five per base product; variant 0 and 1 are the shipped files).
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

# variant I RUN [same]: the product file of variant I, writing to a topic of run RUN; with
# `same`, the shipped root (an identical copy but for name and topic).
variant() {
  local i=$1 run=$2 same=${3:-} base fields
  if (( i % 2 == 0 )); then base=dataflows/github_user_profile.toml; else base=dataflows/github_repo_card.toml; fi
  if [ -n "$same" ]; then fields=$(root_fields $(( i % 2 ))); else fields=$(root_fields "$i"); fi
  sed -e "s/\"github\./\"$PREFIX./" \
      -e "s/^name = \"github_\(.*\)\"/name = \"v${i}_\1\"/" \
      -e "s/^output_topic = \"$PREFIX\.\(.*\)\"/output_topic = \"$PREFIX.$run.v$i.\1\"/" "$base" |
    awk -v fields="$fields" '!done && /^fields = / { print "fields = " fields; done = 1; next } { print }'
}

variant 0 gen > "$WORK/gen.toml"
ROWS=$("$BIN" gen "$WORK/gen.toml" --brokers "$BROKERS" --scale "$SCALE" --changes 0 --seed 1 --partitions 2 | tee /dev/stderr | awk '{print $2}')

# measure FOLDER: "peak_kb cpu_s wall_s" of one job over the folder's products.
measure() {
  /usr/bin/time -f "%M %U %S %e" -o "$WORK/time" \
    "$BIN" --log warn run "$1" --brokers "$BROKERS" --exit-when-caught-up --watch-interval 0 -w 1 >/dev/null
  awk '{ printf "%d %.1f %.1f\n", $1, $2 + $3, $4 }' "$WORK/time"
}

echo "Variants with their own roots (nested relations equal between variants of one base product):"
echo
echo "| products | layout | peak RSS (MB) | CPU (s) | wall (s) |"
echo "|---|---|---|---|---|"
for n in 1 2 10; do
  run="one$n"
  mkdir -p "$WORK/$run"
  for i in $(seq 0 $((n - 1))); do variant "$i" "$run" > "$WORK/$run/v$i.toml"; done
  read -r kb cpu wall < <(measure "$WORK/$run")
  echo "| $n | one job | $((kb / 1024)) | $cpu | $wall |"
  total_kb=0; total_cpu=0; total_wall=0
  for i in $(seq 0 $((n - 1))); do
    run="sep$n.$i"
    mkdir -p "$WORK/$run"
    variant "$i" "$run" > "$WORK/$run/v$i.toml"
    read -r kb cpu wall < <(measure "$WORK/$run")
    total_kb=$((total_kb + kb))
    total_cpu=$(echo "$total_cpu + $cpu" | bc)
    total_wall=$(echo "$total_wall + $wall" | bc)
  done
  echo "| $n | $n separate jobs (sum) | $((total_kb / 1024)) | $total_cpu | $total_wall |"
done
echo
echo "Identical copies (but for name and output topic), one job:"
echo
echo "| products | layout | peak RSS (MB) | CPU (s) | wall (s) |"
echo "|---|---|---|---|---|"
for n in 2 10; do
  run="same$n"
  mkdir -p "$WORK/$run"
  for i in $(seq 0 $((n - 1))); do variant "$i" "$run" same > "$WORK/$run/v$i.toml"; done
  read -r kb cpu wall < <(measure "$WORK/$run")
  echo "| $n | one job | $((kb / 1024)) | $cpu | $wall |"
done
echo
echo "Input: $ROWS rows (scale $SCALE), 2 partitions per topic, -w 1, broker $BROKERS."
