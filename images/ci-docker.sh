#!/usr/bin/env bash
# CI: make a Docker engine answer, then build the base and project images (offline).
#
#   images/ci-docker.sh            # idempotent; safe to re-run
#   images/ci-docker-stop.sh       # stops only the dockerd this script started
#
# - Installs docker.io and debootstrap with apt when missing (CI=true only; elsewhere it asks).
# - When `docker info` fails, starts `dockerd --bridge=none --iptables=false` in the background
#   (pid in $DHT_CI_DIR/dockerd.pid, log in $DHT_CI_DIR/dockerd.log) and waits <= 60 s.
#   Storage driver overlay2; when overlay2 does not work in this sandbox, falls back to vfs.
# - Builds webrtc-dht-base:bookworm (debootstrap) when python:3.11-slim is absent, then
#   webrtc-dht:latest through imagebuild.build_images.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PY="${PY:-$REPO/.venv/bin/python}"
CI_DIR="${DHT_CI_DIR:-/tmp/webrtc-dht-ci}"
PID_FILE="$CI_DIR/dockerd.pid"
LOG_FILE="$CI_DIR/dockerd.log"
WAIT_S=60

log() { printf '[ci-docker] %s\n' "$*" >&2; }
mkdir -p "$CI_DIR"

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
  if [[ "${CI:-}" != true ]]; then
    log "missing: ${need[*]} (install them, or run with CI=true to let this script apt-get them)"
    exit 1
  fi
  log "apt-get install -y ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

engine_up() { docker info >/dev/null 2>&1; }

start_dockerd() {  # $1 = storage driver; returns 0 once the engine answers
  local driver="$1"
  log "starting dockerd (storage driver $driver), log: $LOG_FILE"
  dockerd --bridge=none --iptables=false --storage-driver="$driver" >>"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  local pid; pid="$(cat "$PID_FILE")"
  for _ in $(seq 1 "$WAIT_S"); do
    if engine_up; then log "engine answers (dockerd pid $pid)"; return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "dockerd (storage driver $driver) exited; last log lines:"; tail -n 5 "$LOG_FILE" >&2
      rm -f "$PID_FILE"; return 1
    fi
    sleep 1
  done
  log "dockerd did not answer within $WAIT_S s; stopping it"
  kill "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
  return 1
}

if engine_up; then
  log "a Docker engine already answers; using it (not started by this script)"
elif [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  log "dockerd $(cat "$PID_FILE") from an earlier run does not answer; see $LOG_FILE"
  exit 1
else
  if ! start_dockerd overlay2; then
    log "overlay2 does not work here (common inside sandboxes); falling back to --storage-driver=vfs (slower, more disk)"
    start_dockerd vfs || { log "no Docker engine could be started; see $LOG_FILE"; exit 1; }
  fi
fi

if ! docker image inspect python:3.11-slim >/dev/null 2>&1; then
  "$HERE/build-base.sh"
fi
log "building the project image"
start=$(date +%s)
(cd "$REPO" && "$PY" -m imagebuild)  # imagebuild/ is not installed: run from the repo
log "images ready in $(( $(date +%s) - start )) s"
