#!/usr/bin/env bash
# Installs (once, cached) and runs a real Kafka-compatible broker for denorm: tansu 0.6.0.
#
#   scripts/broker.sh install          build tansu into $DENORM_TOOLS (default ~/.local/share/denorm)
#   scripts/broker.sh start [memory|sqlite]
#                                      start it in the background on $DENORM_BROKER_PORT (19092),
#                                      wait until it accepts connections, print the bootstrap address
#   scripts/broker.sh stop             stop the broker this script started (waits until it is gone)
#   scripts/broker.sh status           say whether it runs
#
# The install is cached: a second call is instant. Everything it caches is rebuilt from crates.io.
set -euo pipefail

TANSU_VERSION=0.6.0
TOOLS=${DENORM_TOOLS:-$HOME/.local/share/denorm}
PORT=${DENORM_BROKER_PORT:-19092}
STATE=${DENORM_BROKER_STATE:-${TMPDIR:-/tmp}/denorm-broker-$PORT}
case "$STATE" in /*) ;; *) STATE="$PWD/$STATE" ;; esac
BIN="$TOOLS/bin/tansu"

log() { echo "broker.sh: $*" >&2; }

installed() {
  [ -x "$BIN" ] && [ -f "$TOOLS/tansu.version" ] && [ "$(cat "$TOOLS/tansu.version")" = "$TANSU_VERSION" ]
}

install() {
  if installed; then return 0; fi
  log "installing tansu $TANSU_VERSION into $TOOLS (takes about 9 minutes on 2 cores, once)"
  mkdir -p "$TOOLS"
  cargo install tansu --version "$TANSU_VERSION" --features dynostore,libsql --root "$TOOLS" --locked >&2
  echo "$TANSU_VERSION" > "$TOOLS/tansu.version"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

start() {
  install
  mkdir -p "$STATE"
  # One starter at a time (tests in parallel processes all ask for the broker); -o keeps the
  # lock's descriptor away from the broker process, so the lock ends with this script.
  flock -o "$STATE/start.lock" bash "$0" start-locked "${1:-memory}"
}

start_locked() {
  local storage=${1:-memory}
  if port_open; then log "a broker already listens on 127.0.0.1:$PORT"; echo "127.0.0.1:$PORT"; return 0; fi
  mkdir -p "$STATE"
  local engine_args=()
  case "$storage" in
    memory) ;;
    sqlite) engine_args=(--storage-engine "sqlite://$STATE/tansu.db") ;;
    *) log "unknown storage '$storage' (memory|sqlite)"; exit 2 ;;
  esac
  # tansu opens a sqlite:// path relative to its working directory, even an absolute one: run it
  # from / so that sqlite:///abs/path is /abs/path.
  cd /
  nohup "$BIN" broker \
    --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    "${engine_args[@]}" >"$STATE/broker.log" 2>&1 </dev/null &
  echo $! > "$STATE/broker.pid"
  for _ in $(seq 1 100); do
    if port_open; then log "tansu ($storage) listening on 127.0.0.1:$PORT, log $STATE/broker.log"; echo "127.0.0.1:$PORT"; return 0; fi
    if ! kill -0 "$(cat "$STATE/broker.pid")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  log "tansu did not start; its log:"; cat "$STATE/broker.log" >&2; exit 1
}

stop() {
  if [ -f "$STATE/broker.pid" ]; then
    local pid
    pid=$(cat "$STATE/broker.pid")
    kill "$pid" 2>/dev/null || true
    # Wait until it is gone (and its port free), so that a start right after does not find it.
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$STATE/broker.pid"
  fi
}

case "${1:-start}" in
  install) install ;;
  start) shift || true; start "${1:-memory}" ;;
  start-locked) shift; start_locked "$@" ;;
  stop) stop ;;
  status) if port_open; then echo "running on 127.0.0.1:$PORT"; else echo "not running"; exit 1; fi ;;
  *) log "usage: $0 install|start [memory|sqlite]|stop|status"; exit 2 ;;
esac
