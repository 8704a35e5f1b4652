#!/usr/bin/env bash
# RTMP fan-out bench: Ferry and nginx-rtmp (and SRS, when SRS_BIN names a
# binary) side by side, same stream, same load generator, on loopback. Prints
# per server and player count the CPU used per player-minute, players that fell
# behind real time, time to first keyframe, resident memory per added player,
# write syscalls per player per second, and the ratios to the peers.
#   usage: benches/rtmp-fanout.sh [PLAYER_COUNTS...]   (default: 100 200 400)
#   env:   MEASURE=15 (seconds measured per run), WORKERS=0 (Ferry's worker threads; 0 = one per core)
#          SRS_BIN=/path/to/srs (optional third peer; this script writes its config;
#          never commit SRS or a script that builds it)
#          FERRY_RTMP__WRITE_INTERVAL_MS=350 (Ferry at SRS's merged-write latency)
#          PEER_FERRY_BIN=path (another build of Ferry, for before/after runs)
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

ferry_rtmp=19351; ferry_http=18081; nginx_rtmp=19352; srs_rtmp=19353
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

FERRY_WORKER_THREADS=${WORKERS:-0} "${PEER_FERRY_BIN:-target/release/ferry}" serve --config "$work/ferry.toml" & ferry_pid=$!; pids+=("$ferry_pid")
nginx -p "$work/nginx" -c "$work/nginx.conf" & nginx_master=$!; pids+=("$nginx_master")
srs_pid=""
if [ -n "${SRS_BIN:-}" ]; then
  # SRS as it ships (merged writes: mw_latency 350 ms), RTMP only, one process.
  cat > "$work/srs.conf" <<CONF
listen $srs_rtmp;
max_connections 10000;
daemon off;
pid $work/srs.pid;
srs_log_tank console;
srs_log_level warn;
vhost __defaultVhost__ {
}
CONF
  "$SRS_BIN" -c "$work/srs.conf" >"$work/srs.log" 2>&1 & srs_pid=$!; pids+=("$srs_pid")
fi
sleep 1
# The master (daemon off, so the pid we started) and its worker.
nginx_pids="$nginx_master $(pgrep -P "$nginx_master" | tr '\n' ' ')"
echo "ferry pid $ferry_pid, nginx pids $nginx_pids"

rss_kib() { # resident memory of processes $*, KiB
  local rss=0
  for p in "$@"; do rss=$((rss + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
  echo "$rss"
}
syscw() { # write syscalls (write, writev) made so far by processes $*
  local n=0
  for p in "$@"; do n=$((n + $(awk '/^syscw/ {print $2}' "/proc/$p/io" 2>/dev/null || echo 0))); done
  echo "$n"
}

run() { # label port publish_name play_name pids players
  ffmpeg -nostdin -loglevel error -re -stream_loop -1 -i "$work/stream.flv" -c copy -f flv "rtmp://127.0.0.1:$2/live/$3" &
  local pub=$!
  sleep 3
  # shellcheck disable=SC2086
  local idle_rss; idle_rss=$(rss_kib $5)
  # Memory and write syscalls over the measured window (rtmp-load connects
  # the players, waits for them, warms up 3 s, then measures).
  ( sleep 5
    # shellcheck disable=SC2086
    w0=$(syscw $5); t0=$(date +%s.%N)
    sleep $((measure / 2))
    # shellcheck disable=SC2086
    rss=$(rss_kib $5)
    sleep $((measure / 2 - 1))
    # shellcheck disable=SC2086
    w1=$(syscw $5); t1=$(date +%s.%N)
    awk -v s="$1" -v n="$6" -v rss="$rss" -v idle="$idle_rss" -v w0="$w0" -v w1="$w1" -v t0="$t0" -v t1="$t1" \
      'BEGIN { printf "RSS server=%s players=%d rss_mb=%d mem_per_player_kb=%.1f writes_per_player_s=%.2f\n",
               s, n, rss / 1024, (rss - idle) / n, (w1 - w0) / n / (t1 - t0) }' ) &
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
  [ -z "$srs_pid" ] || run srs "$srs_rtmp" bench bench "$srs_pid" "$n" | tee -a "$results"
  run ferry "$ferry_rtmp" benchkey bench "$ferry_pid" "$n" | tee -a "$results"
done

echo
python3 - "$results" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
rows = [dict(kv.split("=", 1) for kv in line.split()[1:]) for line in lines if line.startswith("RESULT")]
mem = {(r['server'], r['players']): r for r in
       (dict(kv.split("=", 1) for kv in line.split()[1:]) for line in lines if line.startswith("RSS"))}
print(f"{'server':<11}{'players':>8}{'cpu %core':>10}{'cpu-s/player-min':>18}{'behind':>8}{'ttff p50':>10}{'ttff p99':>10}{'rss MB':>8}{'KB/player':>10}{'writes/player/s':>17}")
for r in rows:
    m = mem.get((r['server'], r['players']), {})
    print(f"{r['server']:<11}{r['players']:>8}{float(r['cpu_core_pct']):>10.1f}{float(r['cpu_s_per_player_min']):>18.5f}{r['behind']:>8}{r['ttff_p50_ms']:>10}{r['ttff_p99_ms']:>10}"
          f"{m.get('rss_mb', '-'):>8}{m.get('mem_per_player_kb', '-'):>10}{m.get('writes_per_player_s', '-'):>17}")
by = {(r['server'], r['players']): r for r in rows}
print()
for n in sorted({int(r['players']) for r in rows}):
    f = by.get(('ferry', str(n)))
    for peer, target in (('nginx-rtmp', '<= 0.5x'), ('srs', '<= 0.8x at 350 ms, <= 1.0x at 100 ms')):
        g = by.get((peer, str(n)))
        if f and g and float(g['cpu_s_per_player_min']) > 0:
            ratio = float(f['cpu_s_per_player_min']) / float(g['cpu_s_per_player_min'])
            print(f"{n} players: Ferry CPU per player = {ratio:.2f}x {peer}'s (target {target}); behind: ferry {f['behind']}, {peer} {g['behind']}")
PY
