#!/usr/bin/env bash
# Failover bench (issue: RTMP origin/edge cluster). Two parts, one run:
#  1. failover-bench: two origins fed the same tags, an edge pulling over the
#     QUIC relay, RTMP players on the edge; the origin the edge pulls from is
#     killed KILLS times, alternating SIGKILL and SIGSTOP, and brought back.
#     Prints the stall at the players per kill, the median and the worst,
#     frames lost or duplicated, players disconnected, and the relay's
#     bandwidth against the stream's bit rate.
#  2. CPU per player: PLAYERS rtmp-load players on the edge (relayed) and then
#     on the origin directly, each process's CPU measured, and the ratio.
#   usage: benches/failover.sh            env: KILLS=20 PLAYERS=500 MEASURE=20 BENCH_FERRY=path
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${KILLS:-20}
players=${PLAYERS:-500}
measure=${MEASURE:-20}
command -v ffmpeg >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get update -q; DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q ffmpeg; }
ulimit -n 65536 2>/dev/null || true
cargo build --release --locked -q -p ferry -p failover-bench -p rtmp-load
ferry=${BENCH_FERRY:-target/release/ferry}  # BENCH_FERRY: another build, for before/after

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# A 2.2 Mbit/s stream (2 Mbit/s H.264 720p30, 2 s GOP, no B-frames, 128 kbit/s AAC).
ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 20 -c:v libx264 -preset veryfast -b:v 2000k -maxrate 2000k -bufsize 4000k -g 60 -sc_threshold 0 -bf 0 \
  -c:a aac -b:a 128k -f flv "$work/stream.flv"

echo "== failover: $kills origin failures, 5 players on the edge"
target/release/failover-bench --ferry "$ferry" --flv "$work/stream.flv" --work "$work/failover" --kills "$kills" --players 5

echo
echo "== CPU per player: $players players on the edge (relayed), then on the origin directly"
cat > "$work/origin.toml" <<TOML
data_dir = "$work/origin"
log = "warn"
[rtmp]
listen = "127.0.0.1:27201"
max_connections_per_address = 100000
[http]
listen = "127.0.0.1:27202"
[hls]
enabled = false
[relay]
listen = "127.0.0.1:0"
[[streams]]
name = "bench"
key = "benchkey"
TOML
FERRY_ADMIN_TOKEN=failover-bench-admin-token "$ferry" serve --config "$work/origin.toml" & origin_pid=$!; pids+=("$origin_pid")
sleep 1
ffmpeg -nostdin -loglevel error -re -stream_loop -1 -i "$work/stream.flv" -c copy -f flv rtmp://127.0.0.1:27201/live/benchkey & pids+=($!)
FERRY_ADMIN_TOKEN=failover-bench-admin-token FERRY_RELAY__TRUST_HTTP=true \
FERRY_LOG=warn FERRY_RTMP__MAX_CONNECTIONS_PER_ADDRESS=100000 "$ferry" edge --origins http://127.0.0.1:27202 \
  --data-dir "$work/edge" --rtmp-listen 127.0.0.1:27203 --http-listen 127.0.0.1:27204 & edge_pid=$!; pids+=("$edge_pid")
sleep 3
results="$work/results"
target/release/rtmp-load --addr 127.0.0.1:27203 --stream bench --players "$players" --measure "$measure" --label edge --pid "$edge_pid" | tee -a "$results"
sleep 6 # the edge's pull lingers 5 s after its last player
target/release/rtmp-load --addr 127.0.0.1:27201 --stream bench --players "$players" --measure "$measure" --label origin --pid "$origin_pid" | tee -a "$results"
python3 - "$results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("RESULT"):
        r = dict(kv.split("=", 1) for kv in line.split()[1:])
        rows[r["server"]] = r
e, o = rows.get("edge"), rows.get("origin")
if e and o:
    ratio = float(e["cpu_s_per_player_min"]) / float(o["cpu_s_per_player_min"])
    print(f"edge (relayed) {float(e['cpu_s_per_player_min']):.5f} vs origin (direct) {float(o['cpu_s_per_player_min']):.5f} CPU-s per player-minute: "
          f"{ratio:.2f}x (target within 10%: <= 1.10x); behind: edge {e['behind']}, origin {o['behind']}; ttff p50 edge {e['ttff_p50_ms']} ms, origin {o['ttff_p50_ms']} ms")
PY
