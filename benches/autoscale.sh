#!/usr/bin/env bash
# Autoscale bench: one `ferry serve` (origin, control with the autoscaler on
# the `local` provider, a director), a live stream from ffmpeg, and a
# synthetic audience through the director that ramps up in a step, holds,
# and leaves. The autoscaler starts and stops `ferry edge` processes on
# loopback. Prints the timeline (viewers, farm, per-edge viewers, the rule
# that decided), then: peak edges, failed viewer requests (must be 0), how
# long after the load step the farm had the size it needs, how long a new
# edge takes from reporting to taking viewers, seconds with an edge above
# its target, and origin fetches per segment during growth.
#   usage: benches/autoscale.sh
#   env: VIEWERS=60 (the step), CAPACITY=10 (viewers an edge is sized for,
#        target 0.8 of it), HOLD=40, DOWN_WINDOW=20 (scale-down window, s)
set -euo pipefail
cd "$(dirname "$0")/.."
viewers=${VIEWERS:-60}; capacity=${CAPACITY:-10}; hold=${HOLD:-40}; window=${DOWN_WINDOW:-20}
need() { command -v "$1" >/dev/null 2>&1; }
if ! need ffmpeg; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q ffmpeg
fi
cargo build --release --locked -q -p ferry -p edge-load
ferry=$PWD/target/release/ferry
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
token=bench-admin-token-0123456789
http=18381; rtmp=19481; director=18382
ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine \
  -t 20 -c:v libx264 -preset veryfast -g 60 -c:a aac -f flv "$work/stream.flv"
FERRY_ADMIN_TOKEN=$token FERRY_LOG=warn FERRY_STREAMS='[{name="bench",key="bench-key-123"}]' \
  FERRY_DIRECTOR__LISTEN=127.0.0.1:$director FERRY_DIRECTOR__MIN_VIEWERS_PER_EDGE=1 \
  FERRY_DIRECTOR__SETTLE_SECONDS=3 FERRY_DIRECTOR__POLL_MS=200 \
  FERRY_DIRECTOR__NEW_VIEWERS_PER_SECOND=0 \
  FERRY_AUTOSCALE__ENABLED=true FERRY_AUTOSCALE__PERIOD_SECONDS=2 \
  FERRY_AUTOSCALE__MIN_EDGES=1 FERRY_AUTOSCALE__MAX_EDGES=12 \
  FERRY_AUTOSCALE__TARGET_VIEWERS=0.8 FERRY_AUTOSCALE__TARGET_CONNECTIONS=0 FERRY_AUTOSCALE__TARGET_CPU=0 \
  FERRY_AUTOSCALE__SCALE_DOWN_WINDOW_SECONDS=$window \
  FERRY_AUTOSCALE__LOCAL__FIRST_PORT=18390 FERRY_AUTOSCALE__LOCAL__LAST_PORT=18409 \
  FERRY_AUTOSCALE__LOCAL__ENV="[\"FERRY_EDGE__CAPACITY=$capacity\",\"FERRY_LOG=warn\"]" \
  $ferry serve --data-dir "$work/origin" --rtmp-listen 127.0.0.1:$rtmp --http-listen 127.0.0.1:$http & pids+=($!)
sleep 1
ffmpeg -nostdin -loglevel error -re -stream_loop -1 -i "$work/stream.flv" -c copy -f flv rtmp://127.0.0.1:$rtmp/live/bench-key-123 & pids+=($!)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$director/hls/bench/master.m3u8" >/dev/null 2>&1 && break; sleep 0.2
done
sleep 6
# A step to VIEWERS at 10 s, held, gone (to 2) at 10 + HOLD, watched until
# the farm is back down (window + drain).
down=$((10 + hold)); end=$((down + window + 40))
target/release/edge-load audience --director 127.0.0.1:$director --control 127.0.0.1:$http \
  --token $token --stream bench --schedule "0:2,10:2,11:$viewers,$down:$viewers,$((down + 5)):2,$end:2"
