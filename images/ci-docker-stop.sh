#!/usr/bin/env bash
# Stop the dockerd that images/ci-docker.sh started (and nothing else): it is identified by the
# pid file ci-docker.sh wrote, and only signalled when that pid is still a dockerd.
set -euo pipefail

CI_DIR="${DHT_CI_DIR:-/tmp/webrtc-dht-ci}"
PID_FILE="$CI_DIR/dockerd.pid"
log() { printf '[ci-docker-stop] %s\n' "$*" >&2; }

if [[ ! -f "$PID_FILE" ]]; then
  log "no $PID_FILE: ci-docker.sh started no engine; nothing to stop"
  exit 0
fi
pid="$(cat "$PID_FILE")"
if ! kill -0 "$pid" 2>/dev/null; then
  log "dockerd $pid is already gone"
  rm -f "$PID_FILE"
  exit 0
fi
if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dockerd ]]; then
  log "pid $pid is not a dockerd any more; leaving it alone"
  rm -f "$PID_FILE"
  exit 0
fi
log "stopping dockerd $pid"
kill -TERM "$pid"
for _ in $(seq 1 30); do
  kill -0 "$pid" 2>/dev/null || { rm -f "$PID_FILE"; log "stopped"; exit 0; }
  sleep 1
done
log "dockerd $pid did not stop within 30 s; sending SIGKILL"
kill -KILL "$pid" 2>/dev/null || true
rm -f "$PID_FILE"
