#!/usr/bin/env bash
# Benchmarks of issue 9, in one go, on this machine, against the real broker:
#
#   scripts/bench.sh [S|M|L ...]   measure each size (default S), save bench/results/<size>.json,
#                                  redraw bench/plots/*.png and the harness section of BENCHMARKS.md
#   scripts/bench.sh smoke         a tiny size end to end (a minute or two): checks that every step
#                                  works and the numbers are sane; writes nothing to the repository
#
# Sizes (--scale of `denorm gen`, dataflows/github_user_profile.toml; rows ≈ 8.7 × scale):
# smoke 1000, S 10000 (87k rows), M 100000, L 1000000 (8.7M rows). M and L take long and much
# memory in the broker (tansu keeps topics in memory): run them by hand, alone on the machine.
#
# Per size:
#   1. `denorm gen` writes the snapshot (2 partitions per topic); its speed is recorded.
#   2. Hydration: `denorm run --exit-when-caught-up` with -w 1, -w 2 and two processes of one
#      worker (-n 2 -w 1), each into a fresh output topic; wall time, the job's own caught-up
#      time, CPU and peak RSS (/usr/bin/time). Each layout's output is checked with
#      `denorm bench verify` (denorm-verify's independent replay), at smoke, S and M.
#   3. Baselines: `denorm bench consume` (read + decode the topics only: the Kafka ceiling) and
#      `denorm bench memory` (the same dataflow fed with rows decoded up front: the in-memory
#      limit), with 1 and 2 workers.
#   4. Changes: one stretch per rate of BENCH_RATES (records/s, `max` = flat out), then one at
#      BENCH_UNIFORM_RATE on the uniform edit mix (`gen --edit-mix uniform`), each on topics of
#      its own: the snapshot, a job (-w 2) that hydrates it, then the first BENCH_CHANGES records
#      of the change stream at the rate, while `denorm bench latency --follow` tails the output
#      topic and `denorm bench hop` measures the broker's own produce → consume hop beside it.
#      Once the job has read the stretch and written its documents (`denorm_workers_behind` 0),
#      it stops and the latency of every change is worked out (method: BENCHMARKS.md); the
#      output is verified (smoke, S, M).
#   5. PostgreSQL requery: a private PostgreSQL cluster in a temporary folder, the same data
#      (`denorm bench export`), scripts/bench_pg.py (load, one query for every profile, then
#      BENCH_PG_CHANGES changes applied one by one, each re-querying the profiles it touches).
#      Its documents of the snapshot are compared with the -w 1 hydration's by content.
#
# Environment: BENCH_STEPS (the steps to run, default "hydration baselines changes postgres"; gen
# always runs; at M and L the change runs write a great many documents, as a fan-out update
# rewrites every profile that starred a popular repo: about 10× more per update at each size),
# DENORM_BROKERS (default 127.0.0.1:$DENORM_BROKER_PORT, the port 19092 unless set; started
# with scripts/broker.sh when it is that and down), BENCH_CHANGES (records per stretch: S 100000, M 50000, L 20000), BENCH_RATES
# ("1000 5000 10000 max"), BENCH_UNIFORM_RATE (1000; `none` leaves the uniform stretch out),
# BENCH_STRETCH_LIMIT (seconds a change stretch may take to be read and its documents written,
# 1800; a stretch that takes longer is recorded as timed out, measured as far as it got and
# judged "not measured", and the faster rates after it are skipped), BENCH_VERIFY (1: verify
# every output; default 1, 0 at L), BENCH_PG_CHANGES (S 20000, M 5000, L 1000), BENCH_PG_PORT
# (55432), BENCH_PG_BIN (folder of initdb/pg_ctl; default from PATH).
# Needs python3 (matplotlib and psycopg go into the cached virtual environment of
# scripts/python.sh), jq, curl, PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

brokers=${DENORM_BROKERS:-127.0.0.1:${DENORM_BROKER_PORT:-19092}}
bin=$root/target/release/denorm
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(S)

log() { echo "bench.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

tmp=""
pids=()
pgdata=""
topics=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  if [ -n "$pgdata" ] && [ -f "$pgdata/postmaster.pid" ]; then
    as_pg pg_ctl -D "$pgdata" -m immediate stop >/dev/null 2>&1 || true
  fi
  pgdata=""
  if [ ${#topics[@]} -gt 0 ]; then
    "$bin" --log error bench drop-topics --brokers "$brokers" "${topics[@]}" >/dev/null 2>&1 || true
  fi
  topics=()
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
  tmp=""
  return "$status"
}
trap 'cleanup' EXIT
trap 'exit 130' INT TERM

for size in "${sizes[@]}"; do
  case "$size" in smoke|S|M|L) ;; *) die "unknown size '$size' (smoke, S, M or L)";; esac
done
# Debian packages it needs, installed when missing (a fresh CI machine has none of them).
missing=()
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/bin/time ] || missing+=(time)
if ! command -v pg_ctl >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
   && [ ! -x "${BENCH_PG_BIN:-/usr/local/bin}/pg_ctl" ]; then
  missing+=(postgresql)
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} from the OS packages"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -q >&2 || true
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
fi
for tool in jq curl python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done
if [ -z "${BENCH_PG_BIN:-}" ]; then
  if command -v pg_ctl >/dev/null; then
    BENCH_PG_BIN=$(dirname "$(command -v pg_ctl)")
  else
    BENCH_PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  fi
fi
PG_BIN=${BENCH_PG_BIN:-/usr/local/bin}
[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] || die "PostgreSQL's initdb and pg_ctl are not in $PG_BIN (set BENCH_PG_BIN)"

# The scripts' Python packages live in a cached virtual environment (scripts/python.sh).
py() { scripts/python.sh "$@"; }
py -c 'import matplotlib, psycopg' || die "the Python environment of scripts/python.sh cannot import matplotlib and psycopg"
if [ "$brokers" = "127.0.0.1:${DENORM_BROKER_PORT:-19092}" ]; then
  scripts/broker.sh start memory >/dev/null
fi
log "building (release)"
cargo build --release -q

# The generated topics are lz4-compressed, as Debezium's producers are often configured: the
# broker keeps every topic in memory, and at L the uncompressed topics alone take 9.4 GB.
gen_kafka=(-X compression.type=lz4)

now_ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }
layout_name() { case "$1" in w1) echo "-w 1";; w2) echo "-w 2";; n2w1) echo "-n 2 -w 1";; esac; }

# Runs PostgreSQL's tools as the postgres user when root (initdb refuses root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$PG_BIN/$1" "${@:2}"; else "$PG_BIN/$1" "${@:2}"; fi
}

# `/usr/bin/time` output (-f '%e %U %S %M') as JSON fields.
time_json() {
  read -r wall user sys rss < <(tail -n 1 "$1")
  jq -n --argjson wall "$wall" --argjson user "$user" --argjson sys "$sys" --argjson rss "$rss" \
    '{wall_seconds: $wall, cpu_seconds: ($user + $sys), peak_rss_bytes: ($rss * 1024)}'
}

# A field of the job's JSON log line whose message starts with $2.
log_field() {
  local value
  value=$(jq -R -r --arg m "$2" --arg f "$3" 'fromjson? | select((.fields.message // "") | startswith($m)) | .fields[$f]' "$1" | tail -n 1)
  echo "${value:-null}"
}

# Waits until a log has a line whose message starts with $2, while process $3 lives.
wait_for_log() {
  local file=$1 message=$2 pid=$3 limit=${4:-1800}
  local start=$SECONDS
  until [ "$(log_field "$file" "$message" message)" != null ]; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$file" >&2; die "the job exited before '$message'"; }
    [ $((SECONDS - start)) -lt "$limit" ] || die "no '$message' after ${limit}s"
    sleep 0.2
  done
}

record() { jq -c "$@" >> "$tmp/steps.jsonl"; }

# Hydration of the snapshot with one layout, into a fresh output topic.
hydrate() {
  local layout=$1; shift
  local file="$tmp/h_$layout.toml" out="$prefix.out_$layout"
  sed -e "s/\"$prefix\.user_profile\"/\"$out\"/" "$tmp/base.toml" > "$file"
  topics+=("$out")
  log "hydration $layout (load $(loadavg))"
  local run=("$bin" --log-json --log info run "$file" --brokers "$brokers" --exit-when-caught-up --watch-interval 0)
  if [ "$layout" = n2w1 ]; then
    # The processes' ports must be known before they start (the host file): two free ports,
    # and a new pair when one was taken before the processes bound it.
    local hosts="$tmp/hosts" attempt second ok
    for attempt in 1 2 3 4 5; do
      printf '127.0.0.1:%s\n127.0.0.1:%s\n' "$(free_port)" "$(free_port)" > "$hosts"
      /usr/bin/time -f '%e %U %S %M' -o "$tmp/time_${layout}_1" "${run[@]}" -w 1 -n 2 -p 1 -h "$hosts" > "$tmp/out_${layout}_1" 2> "$tmp/log_${layout}_1" &
      second=$!
      pids+=("$second")
      ok=1
      /usr/bin/time -f '%e %U %S %M' -o "$tmp/time_${layout}_0" "${run[@]}" -w 1 -n 2 -p 0 -h "$hosts" > "$tmp/out_${layout}_0" 2> "$tmp/log_${layout}_0" || ok=""
      if [ -n "$ok" ]; then wait "$second" || ok=""; else kill "$second" 2>/dev/null || true; wait "$second" 2>/dev/null || true; fi
      [ -n "$ok" ] && break
      grep -q "Address already in use" "$tmp/log_${layout}_0" "$tmp/log_${layout}_1" \
        || { tail -n 20 "$tmp/log_${layout}_0" "$tmp/log_${layout}_1" >&2; die "hydration $layout failed"; }
      log "hydration $layout: a port of the host file was taken meanwhile; again with other ports"
    done
    [ -n "$ok" ] || die "hydration $layout: no free pair of ports in 5 tries"
    local t0 t1
    t0=$(time_json "$tmp/time_${layout}_0")
    t1=$(time_json "$tmp/time_${layout}_1")
    record -n --arg layout "-n 2 -w 1" --argjson rows "$rows" --argjson t0 "$t0" --argjson t1 "$t1" \
      --argjson caught "$(log_field "$tmp/log_${layout}_0" "job caught up" seconds)" \
      --argjson read0 "$(log_field "$tmp/log_${layout}_0" stopped records_read)" \
      --argjson read1 "$(log_field "$tmp/log_${layout}_1" stopped records_read)" \
      --argjson docs0 "$(log_field "$tmp/log_${layout}_0" stopped documents_written)" \
      --argjson docs1 "$(log_field "$tmp/log_${layout}_1" stopped documents_written)" \
      --argjson load "$(loadavg)" \
      '{step: "hydration", layout: $layout, rows: $rows, caught_up_seconds: $caught,
        wall_seconds: ([$t0.wall_seconds, $t1.wall_seconds] | max), cpu_seconds: ($t0.cpu_seconds + $t1.cpu_seconds),
        peak_rss_bytes: ($t0.peak_rss_bytes + $t1.peak_rss_bytes), peak_rss_per_process: [$t0.peak_rss_bytes, $t1.peak_rss_bytes],
        records_read: ($read0 + $read1), documents_written: ($docs0 + $docs1), load_after: $load}'
  else
    local workers=${layout#w}
    /usr/bin/time -f '%e %U %S %M' -o "$tmp/time_$layout" "${run[@]}" -w "$workers" > "$tmp/out_$layout" 2> "$tmp/log_$layout" \
      || { tail -n 20 "$tmp/log_$layout" >&2; die "hydration $layout failed"; }
    record -n --arg layout "-w $workers" --argjson rows "$rows" --argjson t "$(time_json "$tmp/time_$layout")" \
      --argjson caught "$(log_field "$tmp/log_$layout" "job caught up" seconds)" \
      --argjson read "$(log_field "$tmp/log_$layout" stopped records_read)" \
      --argjson docs "$(log_field "$tmp/log_$layout" stopped documents_written)" \
      --argjson load "$(loadavg)" \
      '{step: "hydration", layout: $layout, rows: $rows, caught_up_seconds: $caught} + $t
        + {records_read: $read, documents_written: $docs, load_after: $load}'
  fi
}

# A bench subcommand under /usr/bin/time: its JSON plus wall, CPU and peak RSS.
bench_step() {
  local step=$1; shift
  log "$step $* (load $(loadavg))"
  local out
  out=$(/usr/bin/time -f '%e %U %S %M' -o "$tmp/time_step" "$bin" --log warn bench "$@") || die "denorm bench $* failed"
  record -n --arg step "$step" --argjson r "$out" --argjson t "$(time_json "$tmp/time_step")" --argjson load "$(loadavg)" \
    '{step: $step} + $r + {process: $t, load_after: $load}'
}

records_read() {
  curl -sf "http://$1/metrics" | awk '/^denorm_records_read_total/ {s += $NF} END {printf "%d", s}'
}

# Workers with records read whose documents are not yet written and delivered.
workers_behind() {
  curl -sf "http://$1/metrics" | awk '/^denorm_workers_behind/ {s += $NF} END {printf "%d", s}'
}

# `denorm verify` of one product file (its output topic against its input topics) as a step.
verify_step() {
  local what=$1 file=$2 out
  log "verify: $what (load $(loadavg))"
  out=$("$bin" --log warn bench verify "$file" --brokers "$brokers") || die "bench verify ($what) failed"
  record -n --arg what "$what" --argjson r "$out" '{step: "verify", what: $what} + ($r | del(.report))'
  if [ "$(jq -r .ok <<< "$out")" != true ]; then
    jq -r .report <<< "$out" >&2
    [ "$size" != smoke ] || die "smoke: $what does not verify"
    log "verify: $what does NOT match (recorded)"
  fi
}

# One change stretch, on topics of its own (tansu's memory storage slows as batches pile up in
# a partition, so every stretch starts from fresh topics): the snapshot is written, a job (-w 2)
# hydrates it, then the first $changes_per_rate records of the change stream (mix $2) are produced
# at rate $1 while `bench latency --follow` tails the output topic and `bench hop` probes the
# broker's own produce → consume hop on a fresh topic beside it. Once every record is read and
# every document written and delivered (or after BENCH_STRETCH_LIMIT s), the job stops and the
# latency of every change is worked out. Returns 1 when the stretch timed out.
stretch() {
  local rate=$1 mix=$2
  stretches=$((stretches + 1))
  local tag="st$stretches" sp="${prefix}s$stretches"
  local file="$tmp/$tag.toml" port # the address of its metrics
  sed "s/\"github\./\"$sp./" dataflows/github_user_profile.toml > "$file"
  local own=()
  for t in users stars repos pull_requests payment_info; do own+=("$sp.public.$t"); done
  own+=("$sp.user_profile" "$sp.hop")
  topics+=("${own[@]}")
  log "changes: $changes_per_rate records at $rate/s, $mix mix: snapshot into fresh topics $sp.* (load $(loadavg))"
  "$bin" --log warn gen "$file" --brokers "$brokers" "${gen_kafka[@]}" --scale "$scale" --changes 0 --seed 1 --partitions 2 >/dev/null \
    || die "gen (stretch $tag) failed"
  # Port 0: the job binds a free port and names the address in its log.
  /usr/bin/time -f '%e %U %S %M' -o "$tmp/time_$tag" "$bin" --log-json --log info run "$file" --brokers "$brokers" \
    -w 2 --watch-interval 0 --metrics-addr "127.0.0.1:0" > "$tmp/out_$tag" 2> "$tmp/log_$tag" &
  local timer=$!
  pids+=("$timer")
  wait_for_log "$tmp/log_$tag" "job caught up" "$timer"
  port=$(log_field "$tmp/log_$tag" "serving metrics" addr)
  [ "$port" != null ] || die "the job did not say where it serves its metrics"
  local engine
  engine=$(pgrep -P "$timer" | head -n 1)
  [ -n "$engine" ] || die "cannot find the job's process"
  # "job caught up" means every document of the hydration was handed to the producer; the
  # changes start once they are delivered too, so that a stretch measures changes, not the tail
  # of the hydration's output (at L about a million documents, tens of seconds).
  until [ "$(workers_behind "$port")" -eq 0 ]; do
    kill -0 "$engine" 2>/dev/null || { tail -n 20 "$tmp/log_$tag" >&2; die "the job exited"; }
    sleep 0.2
  done
  local ready="$tmp/$tag.ready" stop="$tmp/$tag.stop"
  rm -f "$ready" "$stop"
  "$bin" --log warn bench hop --topic "$sp.hop" --brokers "$brokers" --stop-file "$stop" --seconds 86400 \
    > "$tmp/$tag.hop.json" 2> "$tmp/$tag.hop.log" &
  local hop=$!
  pids+=("$hop")
  /usr/bin/time -f '%e %U %S %M' -o "$tmp/time_$tag.latency" \
    "$bin" --log warn bench latency "$file" --brokers "$brokers" --follow --ready-file "$ready" --stop-file "$stop" \
    --samples "$tmp/$tag.samples.csv" > "$tmp/$tag.latency.json" 2> "$tmp/$tag.latency.log" &
  local tail=$!
  pids+=("$tail")
  until [ -f "$ready" ]; do
    kill -0 "$tail" 2>/dev/null || { cat "$tmp/$tag.latency.log" >&2; die "bench latency exited before it was ready"; }
    sleep 0.1
  done
  local mix_args=() rate_args=()
  [ "$mix" = popular ] || mix_args=(--edit-mix "$mix")
  [ "$rate" = max ] || rate_args=(--rate "$rate")
  local gen_out sent
  gen_out=$("$bin" --log warn gen "$file" --brokers "$brokers" "${gen_kafka[@]}" --scale "$scale" --seed 1 \
    --changes "$changes_per_rate" --only-changes --max-records "$changes_per_rate" "${mix_args[@]}" "${rate_args[@]}") \
    || die "gen at $rate/s failed"
  sent=$(sed -n 's/^generated \([0-9]*\) records.*/\1/p' <<< "$gen_out")
  [ -n "$sent" ] && [ "$sent" -gt 0 ] || die "gen wrote no records: $gen_out"
  local total=$((snapshot_records + sent)) start=$SECONDS timed_out=""
  # Read, and written: the job reads on while its documents are delivered, gathering what it
  # reads in one time, so having read a stretch does not mean its output is written.
  until [ "$(records_read "$port")" -ge "$total" ] && [ "$(workers_behind "$port")" -eq 0 ]; do
    kill -0 "$engine" 2>/dev/null || { tail -n 20 "$tmp/log_$tag" >&2; die "the job exited"; }
    if [ $((SECONDS - start)) -ge "$stretch_limit" ]; then timed_out=1; break; fi
    sleep 0.2
  done
  local read_then
  read_then=$(records_read "$port")
  sleep 1 # the tail's last fetches
  kill -TERM "$engine"
  wait "$timer" || die "the change job failed on stop"
  touch "$stop"
  wait "$hop" || { cat "$tmp/$tag.hop.log" >&2; die "bench hop failed"; }
  wait "$tail" || { cat "$tmp/$tag.latency.log" >&2; die "bench latency failed"; }
  local verdict='{}'
  if [ -n "$timed_out" ]; then
    log "changes: the job did not read and write the $rate/s stretch within ${stretch_limit}s"
    verdict=$(jq -n --argjson limit "$stretch_limit" --argjson read "$((read_then - snapshot_records))" \
      '{timed_out_seconds: $limit, read: $read}')
  fi
  record -n --arg rate "$rate" --arg mix "$mix" --argjson sent "$sent" \
    --argjson r "$(cat "$tmp/$tag.latency.json")" --argjson hop "$(cat "$tmp/$tag.hop.json")" \
    --argjson job "$(time_json "$tmp/time_$tag")" --argjson tool "$(time_json "$tmp/time_$tag.latency")" \
    --argjson verdict "$verdict" --argjson load "$(loadavg)" \
    '{step: "changes", target_rate: $rate, mix: $mix, records: $sent} + $r + $verdict
      + {hop: $hop, job: $job, latency_tool: $tool, load_after: $load}'
  if [ "$verify_outputs" = 1 ]; then verify_step "changes at $rate/s ($mix mix)" "$file"; fi
  "$bin" --log error bench drop-topics --brokers "$brokers" "${own[@]}" >/dev/null 2>&1 || true
  [ -z "$timed_out" ]
}

# Change stretches: one per rate of the popularity-skewed mix (after a stretch that timed out, the
# faster ones are skipped and recorded so), then one of the uniform mix.
changes() {
  local rates=($rates_list) skipped=""
  stretch_limit=${BENCH_STRETCH_LIMIT:-1800}
  for rate in "${rates[@]}"; do
    if [ -n "$skipped" ]; then
      record -n --arg rate "$rate" --argjson n "$changes_per_rate" --arg after "$skipped" \
        '{step: "changes", target_rate: $rate, mix: "popular", records: $n, skipped_after: $after}'
      continue
    fi
    stretch "$rate" popular || skipped=$rate
  done
  if [ "$uniform_rate" != none ]; then stretch "$uniform_rate" uniform || true; fi
}

# PostgreSQL requery baseline on a private cluster.
postgres_baseline() {
  log "postgres: export, cluster, load, query, changes (load $(loadavg))"
  "$bin" --log warn bench export "$tmp/base.toml" --dir "$tmp/pg" --scale "$scale" --changes "$pg_changes" --seed 1 > /dev/null \
    || die "bench export failed"
  local port=${BENCH_PG_PORT:-55432} sock="$tmp/pgsock"
  chmod 755 "$tmp"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    install -d -o postgres -m 700 "$tmp/pgdata"
    install -d -o postgres -m 755 "$sock"
  else
    mkdir -m 700 "$tmp/pgdata"
    mkdir -m 755 "$sock"
  fi
  as_pg initdb -D "$tmp/pgdata" -A trust -U postgres -E UTF8 --no-sync > "$tmp/initdb.log" 2>&1 \
    || { cat "$tmp/initdb.log" >&2; die "initdb failed"; }
  pgdata="$tmp/pgdata"
  as_pg pg_ctl -D "$pgdata" -l "$sock/postgres.log" -w -t 60 \
    -o "-p $port -k $sock -c listen_addresses='' -c synchronous_commit=off -c shared_buffers=512MB" start > /dev/null \
    || { cat "$sock/postgres.log" >&2; die "PostgreSQL did not start"; }
  local out
  out=$(py scripts/bench_pg.py --dir "$tmp/pg" --host "$sock" --port "$port" --changes "$pg_changes" \
    --documents "$tmp/pg/documents.jsonl") || die "scripts/bench_pg.py failed"
  as_pg pg_ctl -D "$pgdata" -m fast stop > /dev/null
  pgdata=""
  # PostgreSQL's documents of the snapshot against denorm's (the -w 1 hydration's output topic,
  # which holds the documents of the same snapshot), by content.
  local compare=null
  if [ -f "$tmp/h_w1.toml" ]; then
    compare=$("$bin" --log warn bench compare-documents "$tmp/h_w1.toml" --documents "$tmp/pg/documents.jsonl" \
      --brokers "$brokers") || die "bench compare-documents failed"
    if [ "$(jq -r .ok <<< "$compare")" != true ]; then
      jq . <<< "$compare" >&2
      [ "$size" != smoke ] || die "smoke: PostgreSQL's documents differ from denorm's"
      log "postgres: the documents differ from denorm's (recorded)"
    fi
  fi
  record -n --argjson r "$out" --argjson load "$(loadavg)" --arg version "$("$PG_BIN/postgres" --version)" \
    --argjson compare "$compare" \
    '{step: "postgres", version: $version} + $r + {compare_with_denorm: $compare, load_after: $load}'
}

machine_json() {
  jq -n --arg nproc "$(nproc)" \
    --arg mem "$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)" \
    --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
    --arg rustc "$(rustc --version)" \
    --arg tansu "tansu $(cat "${DENORM_TOOLS:-$HOME/.local/share/denorm}/tansu.version" 2>/dev/null || echo '?') (memory storage)" \
    --arg postgres "$("$PG_BIN/postgres" --version)" \
    --arg os "$(. /etc/os-release && echo "$PRETTY_NAME")" \
    '{nproc: ($nproc | tonumber), memory: $mem, cpu: $cpu, rustc: $rustc, broker: $tansu, postgres: $postgres, os: $os}'
}

run_size() {
  local size=$1
  case "$size" in
    smoke) scale=1000; changes_per_rate=${BENCH_CHANGES:-3000}; rates_list=${BENCH_RATES:-"2000 max"}; pg_changes=${BENCH_PG_CHANGES:-500} ;;
    # Larger sizes apply fewer changes: a repository's description change rewrites the profile
    # of every stargazer, about 10x more documents per change at each size.
    S) scale=10000; changes_per_rate=${BENCH_CHANGES:-100000}; pg_changes=${BENCH_PG_CHANGES:-20000} ;;
    M) scale=100000; changes_per_rate=${BENCH_CHANGES:-50000}; pg_changes=${BENCH_PG_CHANGES:-5000} ;;
    L) scale=1000000; changes_per_rate=${BENCH_CHANGES:-20000}; pg_changes=${BENCH_PG_CHANGES:-1000} ;;
  esac
  [ "$size" = smoke ] || rates_list=${BENCH_RATES:-"1000 5000 10000 max"}
  uniform_rate=${BENCH_UNIFORM_RATE:-1000}
  # Every output verified at smoke, S and M; at L on request (each takes minutes there).
  case "$size" in L) verify_outputs=${BENCH_VERIFY:-0} ;; *) verify_outputs=${BENCH_VERIFY:-1} ;; esac
  stretches=0
  tmp=$(mktemp -d)
  prefix="bench$size$$"
  local started=$SECONDS
  sed "s/\"github\./\"$prefix./" dataflows/github_user_profile.toml > "$tmp/base.toml"
  for t in users stars repos pull_requests payment_info; do topics+=("$prefix.public.$t"); done
  log "== size $size: gen --scale $scale (load $(loadavg))"
  local gen_out
  gen_out=$(/usr/bin/time -f '%e %U %S %M' -o "$tmp/time_gen" "$bin" --log warn gen "$tmp/base.toml" --brokers "$brokers" \
    "${gen_kafka[@]}" --scale "$scale" --changes 0 --seed 1 --partitions 2) || die "gen failed"
  snapshot_records=$(sed -n 's/^generated \([0-9]*\) records.*/\1/p' <<< "$gen_out")
  rows=$snapshot_records
  record -n --argjson rows "$rows" --argjson t "$(time_json "$tmp/time_gen")" '{step: "gen", rows: $rows} + $t'

  local steps=" ${BENCH_STEPS:-hydration baselines changes postgres} "
  if [[ $steps == *" hydration "* ]]; then
    for layout in w1 w2 n2w1; do
      hydrate "$layout"
      if [ "$verify_outputs" = 1 ]; then verify_step "hydration $(layout_name "$layout")" "$tmp/h_$layout.toml"; fi
    done
  fi
  if [[ $steps == *" baselines "* ]]; then
    bench_step consume consume "$tmp/base.toml" --brokers "$brokers" -w 1
    bench_step consume consume "$tmp/base.toml" --brokers "$brokers" -w 2
    bench_step memory memory "$tmp/base.toml" --scale "$scale" -w 1
    bench_step memory memory "$tmp/base.toml" --scale "$scale" -w 2
  fi
  if [[ $steps == *" changes "* ]]; then changes; fi
  if [[ $steps == *" postgres "* ]]; then postgres_baseline; fi

  local result="$tmp/result.json"
  jq -s --arg size "$size" --argjson scale "$scale" --argjson changes "$changes_per_rate" \
    --arg date "$(date -u +%Y-%m-%dT%H:%MZ)" \
    --arg commit "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+changes')" \
    --argjson machine "$(machine_json)" --argjson seconds "$((SECONDS - started))" \
    --arg command "scripts/bench.sh $size" \
    '{size: $size, scale: $scale, changes_per_rate: $changes, date: $date, commit: $commit, command: $command,
      harness_seconds: $seconds, machine: $machine, steps: .}' "$tmp/steps.jsonl" > "$result"

  if [ "$size" = smoke ]; then
    # Sanity: every layout and the baselines built one document per user, and every output
    # verifies; every change stretch was measured to the end of its output, with small and
    # fan-out changes, every change seen, and the broker's hop beside it; PostgreSQL built the
    # same documents.
    jq -e --argjson users "$scale" '
      ([.steps[] | select(.step == "changes")] | length) as $stretches
      | ([.steps[] | select(.step == "hydration") | .documents_written == $users] | all and length == 3)
      and ([.steps[] | select(.step == "verify") | .ok] | all and length == 3 + $stretches)
      and ([.steps[] | select(.step == "memory") | .documents == $users] | all)
      and ([.steps[] | select(.step == "consume") | .decode_errors == 0] | all)
      and ([.steps[] | select(.step == "changes") | .window_input_records == .records and (.timed_out_seconds == null)
            and .small.changes > 0 and .fan_out.changes > 0 and .never_seen == 0 and .hop.received > 0] | all and length == 3)
      and ([.steps[] | select(.step == "postgres") | .documents == $users and .changes > 0 and .compare_with_denorm.ok] | all)' \
      "$result" > /dev/null || { jq . "$result" >&2; die "smoke: implausible results"; }
    py scripts/bench_report.py --plots "$tmp/plots" --markdown "$tmp/section.md" "$result"
    for p in hydration memory latency; do [ -s "$tmp/plots/$p.png" ] || die "smoke: no $p.png"; done
    cat "$tmp/section.md"
    log "smoke OK in $((SECONDS - started)) s"
  else
    mkdir -p bench/results
    cp "$result" "bench/results/$size.json"
    py scripts/bench_report.py --plots bench/plots --benchmarks BENCHMARKS.md bench/results/*.json
    log "size $size done in $((SECONDS - started)) s: bench/results/$size.json, bench/plots/, BENCHMARKS.md"
  fi
  cleanup
}

for size in "${sizes[@]}"; do
  run_size "$size"
done
