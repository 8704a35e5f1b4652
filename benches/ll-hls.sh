#!/usr/bin/env bash
# LL-HLS bench: ingest-to-display latency at hls.js (headless Chromium),
# plain HLS and LL-HLS, from the origin and through a `ferry edge`; then the
# origin requests per second that LL-HLS viewers behind one edge cost, for a
# few viewers and for many (the target: independent of the number).
#   usage: benches/ll-hls.sh
#   env: SECONDS_PER_RUN=60 PART=0.25 VIEWERS=1000 STREAMS="plain ll" BENCH_FERRY=path
# Latency is measured in the page as Date.now() - hls.playingDate, sampled
# every 200 ms after 5 s of playback (the origin stamps
# EXT-X-PROGRAM-DATE-TIME from its ingest clock); p50 and p95.
set -euo pipefail
cd "$(dirname "$0")/.."
per_run=${SECONDS_PER_RUN:-60}
part=${PART:-0.25}
viewers=${VIEWERS:-1000}
scripts/setup.sh >/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked -q -p ferry -p edge-load
ferry=${BENCH_FERRY:-target/release/ferry}  # BENCH_FERRY: another build, for before/after
load=target/release/edge-load
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

# 720p30, 2 s GOP, 2.5 Mbit/s + AAC; 20 s looped by the publishers.
ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -t 20 -c:v libx264 -preset veryfast \
  -b:v 2500k -g 60 -keyint_min 60 -sc_threshold 0 -bf 0 -c:a aac -b:a 128k -f flv "$work/in.flv"

cat > "$work/origin.toml" <<TOML
data_dir = "$work/origin"
log = "warn"
[rtmp]
listen = "127.0.0.1:19371"
[http]
listen = "127.0.0.1:18101"
max_connections = 20000
[hls]
part_seconds = $part
[[streams]]
name = "plain"
key = "plainkey01"
[[streams]]
name = "ll"
key = "llhlskey01"
low_latency = true
TOML
cat > "$work/edge.toml" <<TOML
data_dir = "$work/edge"
log = "warn"
[http]
listen = "127.0.0.1:18102"
max_connections = 20000
[edge]
origins = ["http://127.0.0.1:18101"]
TOML
$ferry serve --config "$work/origin.toml" & pids+=($!)
$ferry edge --config "$work/edge.toml" & edge_pid=$!; pids+=($edge_pid)
sleep 1
for key in plainkey01 llhlskey01; do
  ffmpeg -nostdin -loglevel error -re -stream_loop -1 -i "$work/in.flv" -c copy -f flv \
    "rtmp://127.0.0.1:19371/live/$key" & pids+=($!)
done
for s in plain ll; do
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:18101/hls/$s/master.m3u8" && break; sleep 0.2
  done
done
sleep 6

echo "LL-HLS part target ${part} s, 2 s segments, ${per_run} s per run"
printf '%-8s %-6s %10s %10s %8s\n' stream via p50_ms p95_ms stall_ms
for s in ${STREAMS:-plain ll}; do
  for via in origin edge; do
    port=18101; [ "$via" = edge ] && port=18102
    ll=0; [ "$s" = ll ] && ll=1
    summary=$(PLAY_URL="http://127.0.0.1:$port/hls/$s/master.m3u8" SECONDS="$per_run" LOW_LATENCY=$ll \
      node tests/ui/play.cjs | sed -n 's/^summary //p')
    field() { echo "$summary" | sed -n "s/.*\"$1\":\([-0-9.]*\).*/\1/p"; }
    printf '%-8s %-6s %10s %10s %8s\n' "$s" "$via" "$(field latency_p50_ms)" "$(field latency_p95_ms)" "$(field max_stall_ms)"
  done
done
echo "targets: LL-HLS p50 <= 1500 ms through an edge; plain HLS <= 6000 ms"

fetches() { # origin fetches the edge made so far (all results)
  curl -s http://127.0.0.1:18102/metrics | awk '/^ferry_edge_origin_fetches_total/ {s += $2} END {print s + 0}'
}
echo
echo "origin requests per second for LL-HLS viewers behind one edge (20 s each):"
for n in 10 "$viewers"; do
  before=$(fetches)
  t0=$(date +%s.%N)
  out=$($load ll --addr 127.0.0.1:18102 --playlist /hls/ll/source/index.m3u8 --viewers "$n" --seconds 20)
  t1=$(date +%s.%N)
  after=$(fetches)
  rate=$(awk -v a="$after" -v b="$before" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.1f", (a - b) / (t1 - t0)}')
  echo "  viewers=$n origin_requests_per_s=$rate   ($out)"
done
echo "target: origin requests per second independent of the number of viewers"
