#!/usr/bin/env bash
# RTMP fan-out bench: Ferry and nginx-rtmp side by side, same stream, same load
# generator, on loopback. Prints per server and player count the CPU used per
# player-minute, players that fell behind real time, time to first keyframe, and
# the Ferry/nginx ratios.
#   usage: benches/rtmp-fanout.sh [PLAYER_COUNTS...]   (default: 100 200 400)
#   env:   MEASURE=15 (seconds measured per run), WORKERS=0 (Ferry's worker threads; 0 = one per core)
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("${@:-100 200 400}")
# shellcheck disable=SC2206
counts=(${counts[*]})
measure=${MEASURE:-15}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || [ ! -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || ! need ffmpeg; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q nginx-light libnginx-mod-rtmp ffmpeg
fi
ulimit -n 65536 2>/dev/null || true
cargo build --release --locked -q -p ferry -p rtmp-load

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# A 2.2 Mbit/s stream (2 Mbit/s H.264 720p30, 2 s GOP, 128 kbit/s AAC), looped by the publisher.
ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 20 -c:v libx264 -preset veryfast -b:v 2000k -maxrate 2000k -bufsize 4000k -g 60 -sc_threshold 0 -bf 0 \
  -c:a aac -b:a 128k -f flv "$work/stream.flv"

ferry_rtmp=19351; ferry_http=18081; nginx_rtmp=19352
cat > "$work/ferry.toml" <<TOML
data_dir = "$work/ferry-data"
log = "warn"
[rtmp]
listen = "127.0.0.1:$ferry_rtmp"
# Every player comes from 127.0.0.1 here (nginx-rtmp has no such limit).
max_connections_per_address = 100000
[http]
listen = "127.0.0.1:$ferry_http"
# RTMP fan-out only, like the nginx-rtmp peer (no HLS there either).
[hls]
enabled = false
[[streams]]
name = "bench"
key = "benchkey"
TOML
mkdir -p "$work/nginx/logs"
cat > "$work/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 8192; }
rtmp {
  server {
    listen 127.0.0.1:$nginx_rtmp;
    chunk_size 4096;
    application live { live on; }
  }
}
CONF

FERRY_WORKER_THREADS=${WORKERS:-0} target/release/ferry serve --config "$work/ferry.toml" & ferry_pid=$!; pids+=("$ferry_pid")
nginx -p "$work/nginx" -c "$work/nginx.conf" & nginx_master=$!; pids+=("$nginx_master")
sleep 1
# The master (daemon off, so the pid we started) and its worker.
nginx_pids="$nginx_master $(pgrep -P "$nginx_master" | tr '\n' ' ')"
echo "ferry pid $ferry_pid, nginx pids $nginx_pids"

run() { # label port publish_name play_name pids players
  ffmpeg -nostdin -loglevel error -re -stream_loop -1 -i "$work/stream.flv" -c copy -f flv "rtmp://127.0.0.1:$2/live/$3" &
  local pub=$!
  sleep 3
  # Resident memory of the server half-way through the measurement (all its processes).
  ( sleep $((measure / 2 + 5)); rss=0
    for p in $5; do rss=$((rss + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
    echo "RSS server=$1 players=$6 rss_mb=$((rss / 1024))" ) &
  local sampler=$!
  # shellcheck disable=SC2086
  target/release/rtmp-load --addr "127.0.0.1:$2" --stream "$4" --players "$6" --measure "$measure" --label "$1" --pid $5
  wait "$sampler" 2>/dev/null || true
  kill "$pub"; wait "$pub" 2>/dev/null || true
  sleep 1
}

results="$work/results"
for n in "${counts[@]}"; do
  run nginx-rtmp "$nginx_rtmp" bench bench "$nginx_pids" "$n" | tee -a "$results"
  run ferry "$ferry_rtmp" benchkey bench "$ferry_pid" "$n" | tee -a "$results"
done

echo
python3 - "$results" <<'PY'
import sys
rows = [dict(kv.split("=", 1) for kv in line.split()[1:]) for line in open(sys.argv[1]) if line.startswith("RESULT")]
print(f"{'server':<11}{'players':>8}{'cpu %core':>10}{'cpu-s/player-min':>18}{'behind':>8}{'ttff p50':>10}{'ttff p99':>10}")
for r in rows:
    print(f"{r['server']:<11}{r['players']:>8}{float(r['cpu_core_pct']):>10.1f}{float(r['cpu_s_per_player_min']):>18.5f}{r['behind']:>8}{r['ttff_p50_ms']:>10}{r['ttff_p99_ms']:>10}")
by = {(r['server'], r['players']): r for r in rows}
print()
for n in sorted({int(r['players']) for r in rows}):
    f, g = by.get(('ferry', str(n))), by.get(('nginx-rtmp', str(n)))
    if f and g and float(g['cpu_s_per_player_min']) > 0:
        ratio = float(f['cpu_s_per_player_min']) / float(g['cpu_s_per_player_min'])
        print(f"{n} players: Ferry CPU per player = {ratio:.2f}x nginx-rtmp's (target <= 0.5x); behind: ferry {f['behind']}, nginx {g['behind']}")
PY
