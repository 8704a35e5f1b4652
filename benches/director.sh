#!/usr/bin/env bash
# Director bench: what rewriting playlists costs and how much latency the
# director adds. One `ferry serve` (origin + control), one `ferry edge`, one
# `ferry director`, a live stream from ffmpeg, all on loopback. Prints
# playlists per CPU-second of the director for a returning viewer (cached
# rewrite) and for a new viewer on every request (assignment + rewrite), and
# wrk's p50/p99 latency of a media playlist through the director against the
# same playlist from the edge directly.
#   usage: benches/director.sh      env: DURATION=10 (seconds per wrk run), BENCH_FERRY=path
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10}
need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need ffmpeg; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q wrk ffmpeg
fi
cargo build --release --locked -q -p ferry
ferry=${BENCH_FERRY:-target/release/ferry}  # BENCH_FERRY: another build, for before/after
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
token=bench-admin-token-0123456789
origin=18281; edge=18282; director=18283
ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine \
  -t 20 -c:v libx264 -preset veryfast -g 60 -c:a aac -f flv "$work/stream.flv"
FERRY_ADMIN_TOKEN=$token FERRY_LOG=warn FERRY_STREAMS='[{name="bench",key="bench-key-123"}]' \
  $ferry serve --data-dir "$work/origin" --rtmp-listen 127.0.0.1:19381 --http-listen 127.0.0.1:$origin & pids+=($!)
sleep 1
ffmpeg -nostdin -loglevel error -re -stream_loop -1 -i "$work/stream.flv" -c copy -f flv rtmp://127.0.0.1:19381/live/bench-key-123 & pids+=($!)
FERRY_ADMIN_TOKEN=$token FERRY_LOG=warn FERRY_CONTROL__URL=http://127.0.0.1:$origin \
  $ferry edge --origins http://127.0.0.1:$origin --http-listen 127.0.0.1:$edge --data-dir "$work/edge" & pids+=($!)
# New viewers are rate-limited per address by default (100/s); wrk's "new
# viewer each time" run comes from one address, so the limit is off here.
FERRY_LOG=warn FERRY_DIRECTOR__NEW_VIEWERS_PER_SECOND=0 $ferry director --control http://127.0.0.1:$origin --token $token \
  --http-listen 127.0.0.1:$director --data-dir "$work/director" & director_pid=$!; pids+=($director_pid)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$director/hls/bench/master.m3u8" >/dev/null 2>&1 && break; sleep 0.2
done
sleep 4
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
playlist=/hls/bench/source/index.m3u8
cat > "$work/new-viewer.lua" <<LUA
request = function()
  return wrk.format("GET", "$playlist?v=" .. string.format("%x", math.random(1, 2147483647)))
end
LUA
run() { # label url [script]
  local t0; t0=$(ticks $director_pid)
  local out
  if [ -n "${3:-}" ]; then out=$(wrk -t2 -c64 -d"${duration}s" --latency -s "$3" "$2"); else out=$(wrk -t2 -c64 -d"${duration}s" --latency "$2"); fi
  local t1; t1=$(ticks $director_pid)
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  local p50; p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  local p99; p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  local cpu; cpu=$(echo "($t1 - $t0) / $hz" | bc -l)
  local per="-"
  if [ "$(echo "$cpu > 0.1" | bc -l)" = 1 ]; then per=$(printf '%.0f' "$(echo "$reqs / $cpu" | bc -l)"); fi
  printf '  %-44s %8.0f req/s  p50 %-8s p99 %-8s director %5.2f cores, %8s playlists/CPU-s  non-2xx=%s\n' \
    "$1" "$(echo "$reqs / $duration" | bc -l)" "$p50" "$p99" "$(echo "$cpu / $duration" | bc -l)" \
    "$per" "${non2xx:-0}"
}
echo "== media playlist, wrk -t2 -c64 ${duration}s =="
run "from the edge directly" "http://127.0.0.1:$edge$playlist"
# A returning viewer carries the signed token its master playlist gave it.
viewer=$(curl -s "http://127.0.0.1:$director/hls/bench/master.m3u8" | grep -o 'v=[0-9a-f]*' | head -1)
run "through the director, returning viewer" "http://127.0.0.1:$director$playlist?$viewer"
run "through the director, a new viewer each time" "http://127.0.0.1:$director$playlist" "$work/new-viewer.lua"
curl -s "http://127.0.0.1:$director/metrics" | grep -E "^ferry_director_(playlists|edge_set|no_edge|fetch)" || true
