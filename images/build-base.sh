#!/usr/bin/env bash
# Build the offline base image `webrtc-dht-base:bookworm` with debootstrap.
#
# Why: no container registry is reachable here, so `python:3.11-slim` cannot be pulled. This makes
# an equivalent base (Debian bookworm minbase + python3 + venv support) from the host's Debian
# mirror and imports it into the local engine. The project image then installs wheels built on the
# host (see imagebuild/build.py), so nothing inside the image build needs the network.
#
# Usage: images/build-base.sh [TAG]          (default tag: webrtc-dht-base:bookworm)
#   env DHT_DEBIAN_MIRROR overrides the mirror; FORCE=1 rebuilds even if the tag exists.
# Idempotent: exits 0 without work when the tag already exists. Needs root (debootstrap).
set -euo pipefail

TAG="${1:-webrtc-dht-base:bookworm}"
SUITE=bookworm
PACKAGES=python3,python3-venv

log() { printf '[build-base] %s\n' "$*" >&2; }

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
  log "$TAG already exists; nothing to do (FORCE=1 to rebuild)"
  exit 0
fi
command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install -y debootstrap)"; exit 1; }
docker info >/dev/null 2>&1 || { log "no Docker engine answers (start dockerd first)"; exit 1; }

# The first http(s) Debian mirror configured for apt (deb822 .sources or one-line .list).
mirror="${DHT_DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  mirror="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' \
      | grep -E '^https?://.*/debian/?$' | head -n1 || true)"
fi
if [[ -z "$mirror" ]]; then
  mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; break}}' \
      | grep -E '/debian/?$' | head -n1 || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

root="$(mktemp -d /tmp/dht-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
log "debootstrap --variant=minbase $SUITE from $mirror (packages: $PACKAGES)"
start=$(date +%s)
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" >"$root.log" 2>&1 \
  || { log "debootstrap failed; last lines of $root.log:"; tail -n 20 "$root.log" >&2; exit 1; }
rm -f "$root.log"

# Trim what a runtime image never needs.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
printf 'deb %s %s main\n' "$mirror" "$SUITE" >"$root/etc/apt/sources.list"

log "importing into the engine as $TAG"
tar -C "$root" --numeric-owner -c . \
  | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$TAG" >/dev/null
log "done in $(( $(date +%s) - start )) s: $(docker image inspect -f '{{.Size}}' "$TAG") bytes"
