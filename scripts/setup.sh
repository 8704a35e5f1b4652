#!/usr/bin/env bash
# Installs what building, running and testing Ferry needs on Debian 12.
# Safe to run again; as root it uses apt-get directly, otherwise sudo.
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# Build tools; FFmpeg's libraries (the transcoding ladder links libavcodec and
# libswscale; bindgen needs libclang); ffmpeg + ffprobe, rtmpdump and librtmp
# (what OBS publishes with, via python3-librtmp) are the real clients the tests drive.
$sudo apt-get install -y -q --no-install-recommends \
  build-essential pkg-config ca-certificates curl clang libclang-dev \
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
  libavfilter-dev libavdevice-dev \
  ffmpeg rtmpdump python3 python3-librtmp
# Installs Debian packages that are test peers only: Debian must not start
# their system services (policy-rc.d 101 = "do not start services").
install_without_starting() {
  policy=/usr/sbin/policy-rc.d
  made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    made_policy=1
  fi
  $sudo apt-get install -y -q --no-install-recommends "$@"
  [ -z "$made_policy" ] || $sudo rm -f "$policy"
}
# nginx with the RTMP module: a restream receiver in tests and the fan-out
# bench's peer; with the stream module, a TLS terminator in front of it (an
# RTMPS receiver).
if [ ! -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || [ ! -f /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  install_without_starting nginx-light libnginx-mod-rtmp libnginx-mod-stream
fi
# PostgreSQL: the control plane's shared state in tests (each test makes its
# own cluster with initdb and starts it with pg_ctl on a free port).
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  install_without_starting postgresql
fi
# The web UI's browser test: Debian's Chromium, and Node.js for playwright-core.
$sudo apt-get install -y -q --no-install-recommends chromium
command -v npm >/dev/null 2>&1 || $sudo apt-get install -y -q --no-install-recommends nodejs npm
# hls.js (embedded into the binary for the UI's preview) and playwright-core,
# at the versions in ui/package-lock.json.
(cd "$(dirname "$0")/../ui" && npm ci --no-audit --no-fund)
# Schemathesis (PyPI) for the property-based run against the API's OpenAPI
# document, in a virtualenv of its own (Debian's Python refuses global pip).
tools="$HOME/.local/share/ferry-tools"
if [ ! -x "$tools/bin/st" ]; then
  python3 -m venv "$tools" 2>/dev/null || { $sudo apt-get install -y -q python3-venv && python3 -m venv "$tools"; }
  "$tools/bin/pip" install -q schemathesis==4.32.5
fi
if ! command -v cargo >/dev/null 2>&1; then
  # The Rust toolchain, from rustup as its documentation says.
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
# An S3-compatible server for the HLS origin tests (checks request signatures).
if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
  cargo install s3s-fs@0.14.1 --features binary --locked
fi
