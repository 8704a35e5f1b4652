#!/usr/bin/env bash
# HTTP serving cost of `ferry serve` builds side by side (e.g. before and after
# a change to the accept loop): wrk -t2 -c64 for 8 s on /healthz (the accept
# loop and routing alone) and on an HLS 404 (a store read), requests per
# CPU-second of the server process.
#   usage: benches/http-serve.sh FERRY_BINARY [FERRY_BINARY...]
set -euo pipefail
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
port=18401
for bin in "$@"; do
  d=$(mktemp -d)
  FERRY_ADMIN_TOKEN=bench-admin-token-0123456789 FERRY_LOG=warn "$bin" serve --data-dir "$d" \
    --rtmp-listen 127.0.0.1:$((port + 1000)) --http-listen 127.0.0.1:$port >/dev/null 2>&1 & pid=$!
  sleep 1.5
  for path in /healthz /hls/nope/index.m3u8; do
    t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
    r=$(wrk -t2 -c64 -d8s "http://127.0.0.1:$port$path" | awk '/requests in/ {print $1}')
    t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
    printf '%-40s %-22s %8.0f req/s %8.0f req/CPU-s\n' "$bin" "$path" \
      "$(echo "$r / 8" | bc -l)" "$(echo "$r * $(getconf CLK_TCK) / ($t1 - $t0)" | bc -l)"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$d"
  port=$((port + 10))
done
