#!/usr/bin/env bash
# Edge-cache bench: `ferry edge` and nginx (proxy_cache + proxy_cache_lock, one
# worker) side by side in one run, in front of the same origin (a plain nginx
# serving a directory with Ferry's headers), same content, same load tools.
# Prints, per peer: requests per CPU-second on cache hits (1 MiB segments and
# a ~400 B playlist, wrk at 64 and 512 connections); origin fetches and time
# to last byte when 1,000 clients ask for one new segment at once; origin
# fetches per second of a max-age=1 playlist under load; memory per cached
# GiB and per 10,000 idle keep-alive connections; and the Ferry/nginx ratios.
#   usage: benches/edge-cache.sh      env: DURATION=10 (seconds per wrk run)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q nginx-light wrk
fi
ulimit -n 65536 2>/dev/null || true
cargo build --release --locked -q -p ferry -p edge-load
ferry=target/release/ferry
load=target/release/edge-load

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

origin_port=18190; nginx_port=18191; ferry_port=18192
# Content: 1 MiB segments, a ~400 B media playlist per test path.
mkdir -p "$work/origin/hls/b"/{source,cold,fill,live-ferry,live-nginx}
for i in 0 1 2 3; do head -c 1048576 /dev/urandom > "$work/origin/hls/b/source/seg-$i.ts"; done
for i in $(seq 0 9); do head -c 1048576 /dev/urandom > "$work/origin/hls/b/cold/seg-$i.ts"; done
for i in $(seq 0 299); do head -c 1048576 /dev/urandom > "$work/origin/hls/b/fill/seg-$i.ts"; done
playlist() {
  printf '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:100\n'
  for i in 100 101 102 103 104 105; do printf '#EXT-X-PROGRAM-DATE-TIME:2026-12-02T10:00:%02d.000Z\n#EXTINF:2.000,\nmx6kkjsk-%d.ts\n' $((i-100)) "$i"; done
}
for d in source live-ferry live-nginx; do playlist > "$work/origin/hls/b/$d/index.m3u8"; done
echo "playlist: $(wc -c < "$work/origin/hls/b/source/index.m3u8") bytes; segments: 1 MiB"

mkdir -p "$work/logs" "$work/nginx-cache"
# nginx started as root runs its workers as nobody: they must read the
# content and write the cache.
chmod 755 "$work"; chmod -R a+rX "$work/origin"; chmod 777 "$work/nginx-cache"
cat > "$work/origin.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/origin.pid;
error_log $work/logs/origin-error.log warn;
events { worker_connections 4096; }
http {
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  access_log $work/logs/origin-access.log;
  sendfile on;
  server {
    listen 127.0.0.1:$origin_port;
    root $work/origin;
    location ~ \.m3u8\$ { add_header Cache-Control "max-age=1"; add_header Access-Control-Allow-Origin "*"; }
    # Cold segments trickle at 2 MiB/s, so a fill takes about half a second.
    location /hls/b/cold/ { limit_rate 2m; add_header Cache-Control "public, max-age=86400, immutable"; }
    location / { add_header Cache-Control "public, max-age=86400, immutable"; add_header Access-Control-Allow-Origin "*"; }
  }
}
CONF
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/logs/nginx-error.log warn;
events { worker_connections 20000; }
worker_rlimit_nofile 65536;
http {
  access_log off;
  sendfile on;
  proxy_cache_path $work/nginx-cache levels=1:2 keys_zone=hls:64m max_size=4g inactive=1h use_temp_path=off;
  upstream origin { server 127.0.0.1:$origin_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port backlog=4096;
    keepalive_requests 1000000;
    location /hls/ {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache hls;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10s;
      proxy_cache_valid 404 1s;
      add_header Cache-Status \$upstream_cache_status;
    }
  }
}
CONF
cat > "$work/ferry.toml" <<TOML
data_dir = "$work/ferry-data"
log = "warn"
[http]
listen = "127.0.0.1:$ferry_port"
max_connections = 20000
header_read_timeout_seconds = 60
[edge]
origins = ["http://127.0.0.1:$origin_port"]
memory_bytes = 2147483648
TOML
nginx -c "$work/origin.conf" -p "$work" & pids+=($!)
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
$ferry edge --config "$work/ferry.toml" & ferry_pid=$!; pids+=($ferry_pid)
for port in $origin_port $nginx_port $ferry_port; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/hls/b/source/index.m3u8" && break; sleep 0.1; done
done
sleep 0.5
nginx_pid=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)  # the one worker

ticks() { # utime+stime of a process (all threads), in clock ticks
  awk '{print $14+$15}' "/proc/$1/stat"
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
origin_count() { grep -c "$1" "$work/logs/origin-access.log" || true; }

declare -A result
# wrk against a peer: requests per CPU-second of the peer's process.
measure_hits() { # name pid port path conns
  local name=$1 pid=$2 port=$3 path=$4 conns=$5
  curl -s -o /dev/null "http://127.0.0.1:$port$path"; curl -s -o /dev/null "http://127.0.0.1:$port$path"
  local t0; t0=$(ticks "$pid")
  local out; out=$(wrk -t2 -c"$conns" -d"${duration}s" "http://127.0.0.1:$port$path")
  local t1; t1=$(ticks "$pid")
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local errs; errs=$(echo "$out" | awk '/Non-2xx/ {print $NF}'); errs=${errs:-0}
  local cpu; cpu=$(echo "($t1 - $t0) / $hz" | bc -l)
  local rps; rps=$(echo "$reqs / $duration" | bc -l)
  local per; per=$(echo "$reqs / $cpu" | bc -l)
  local cores; cores=$(echo "$cpu / $duration" | bc -l)
  printf '  %-6s %-26s c=%-4s %9.0f req/s  %5.2f cores  %9.0f req/CPU-s  non-2xx=%s\n' "$name" "$path" "$conns" "$rps" "$cores" "$per" "$errs"
  if [ "$errs" != 0 ]; then echo "  $name answered errors; the numbers above are not hits" >&2; exit 1; fi
  result["$name $path $conns"]=$per
}

echo
echo "== cache hits (wrk -t2, ${duration}s; the server's CPU from /proc) =="
for path in /hls/b/source/seg-0.ts /hls/b/source/index.m3u8; do
  for conns in 64 512; do
    measure_hits nginx "$nginx_pid" $nginx_port $path $conns
    measure_hits ferry "$ferry_pid" $ferry_port $path $conns
    printf '  ratio ferry/nginx req/CPU-s: %.2fx\n' "$(echo "${result["ferry $path $conns"]} / ${result["nginx $path $conns"]}" | bc -l)"
  done
done
# The playlist is max-age=1: hits above include refreshes, as in production.

echo
echo "== cold start: 1,000 clients ask for one new 1 MiB segment at once (origin trickles it at 2 MiB/s) =="
for run in 1 2; do
  n=$(( run * 2 )); f=$(( run * 2 + 1 ))
  printf '  nginx: %s origin_fetches=%s\n' "$($load burst --addr 127.0.0.1:$nginx_port --path /hls/b/cold/seg-$n.ts --clients 1000)" "$(origin_count "cold/seg-$n.ts")"
  printf '  ferry: %s origin_fetches=%s\n' "$($load burst --addr 127.0.0.1:$ferry_port --path /hls/b/cold/seg-$f.ts --clients 1000)" "$(origin_count "cold/seg-$f.ts")"
done

echo
echo "== a max-age=1 playlist under load (wrk -c64, ${duration}s): origin fetches per second =="
for peer in nginx ferry; do
  port=$nginx_port; [ $peer = ferry ] && port=$ferry_port
  before=$(origin_count "live-$peer/index.m3u8")
  wrk -t2 -c64 -d"${duration}s" "http://127.0.0.1:$port/hls/b/live-$peer/index.m3u8" >/dev/null
  after=$(origin_count "live-$peer/index.m3u8")
  printf '  %-6s %d origin fetches in %ss = %.1f/s\n' $peer $((after - before)) "$duration" "$(echo "($after - $before) / $duration" | bc -l)"
done

echo
echo "== memory =="
for peer in nginx ferry; do
  pid=$nginx_pid; port=$nginx_port; [ $peer = ferry ] && { pid=$ferry_pid; port=$ferry_port; }
  before=$(rss_kib "$pid")
  $load fill --addr 127.0.0.1:$port --pattern "/hls/b/fill/seg-{}.ts" --count 300 >/dev/null
  sleep 1.5
  after=$(rss_kib "$pid")
  printf '  %-6s RSS %d -> %d KiB after caching 300 MiB: %.0f MiB per cached GiB' $peer "$before" "$after" "$(echo "($after - $before) / 1024 * 1024 / 300" | bc -l)"
  [ $peer = nginx ] && printf ' (nginx caches on disk: %s in its cache directory)' "$(du -sh "$work/nginx-cache" | cut -f1)"
  echo
done
for peer in nginx ferry; do
  pid=$nginx_pid; port=$nginx_port; [ $peer = ferry ] && { pid=$ferry_pid; port=$ferry_port; }
  before=$(rss_kib "$pid")
  $load idle --addr 127.0.0.1:$port --path /hls/b/source/index.m3u8 --connections 10000 --seconds 4 > "$work/idle-$peer.txt" &
  idle=$!
  for _ in $(seq 600); do grep -q opened "$work/idle-$peer.txt" 2>/dev/null && break; sleep 0.1; done
  sleep 2
  after=$(rss_kib "$pid")
  wait $idle
  printf '  %-6s 10,000 idle keep-alive connections: RSS %d -> %d KiB = %.1f KiB each (%s)\n' $peer "$before" "$after" "$(echo "($after - $before) / 10000" | bc -l)" "$(grep alive "$work/idle-$peer.txt")"
done
