#!/usr/bin/env bash
# Edge-cache bench: `ferry edge` and nginx (proxy_cache + proxy_cache_lock, one
# worker) side by side in one run, in front of the same origin (a plain nginx
# serving a directory with Ferry's headers), same content, same load tools.
# Prints, per peer: requests per CPU-second on cache hits (1 MiB segments and
# a ~400 B playlist, wrk at 64 and 512 connections); origin fetches and time
# to last byte when 1,000 clients ask for one new segment at once; origin
# fetches per second of a max-age=1 playlist under load; memory per cached
# GiB and per 10,000 idle keep-alive connections; and the Ferry/nginx ratios.
# Hits are measured in ROUNDS rounds against nginx with one worker and with
# one worker per core (its packaged default), and print the median ratio
# with its range.
#   usage: benches/edge-cache.sh      env: DURATION=10 (seconds per wrk run), ROUNDS=3,
#                                     BENCH_FERRY=target/release/ferry
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
if [ -n "${BENCH_FERRY:-}" ]; then cargo build --release --locked -q -p edge-load
else cargo build --release --locked -q -p ferry -p edge-load; fi
ferry=${BENCH_FERRY:-target/release/ferry}  # BENCH_FERRY: another build, for before/after
load=target/release/edge-load

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

origin_port=18190; nginx_port=18191; ferry_port=18192; nginx2_port=18193
rounds=${ROUNDS:-3}
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
      # As an operator tunes it for live HLS: one refresh of an expired
      # playlist in the background, the stale copy meanwhile.
      proxy_cache_background_update on;
      proxy_cache_use_stale updating;
      add_header Cache-Status \$upstream_cache_status;
    }
  }
}
CONF
# The same nginx at its packaged default of one worker per core.
sed -e "s/^worker_processes 1;/worker_processes auto;/" -e "s/:$nginx_port /:$nginx2_port /" \
    -e "s#pid $work/nginx.pid#pid $work/nginx2.pid#" -e "s#keys_zone=hls:#keys_zone=hls2:#" \
    -e "s#proxy_cache hls;#proxy_cache hls2;#" -e "s#$work/nginx-cache#$work/nginx2-cache#" \
    "$work/nginx.conf" > "$work/nginx2.conf"
mkdir -p "$work/nginx2-cache"; chmod 777 "$work/nginx2-cache"
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
nginx -c "$work/nginx2.conf" -p "$work" & pids+=($!)
$ferry edge --config "$work/ferry.toml" & ferry_pid=$!; pids+=($ferry_pid)
for port in $origin_port $nginx_port $nginx2_port $ferry_port; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/hls/b/source/index.m3u8" && break; sleep 0.1; done
done
sleep 0.5
# The one worker (not the cache manager or loader).
nginx_pid=$(pgrep -f "nginx: worker process" -P "$(cat "$work/nginx.pid")" | head -1)
# Every process of an nginx (master, workers, cache manager), at call time.
all_of() { echo "$(cat "$1") $(pgrep -P "$(cat "$1")" | tr '\n' ' ')"; }

ticks() { # utime+stime of processes (all threads), in clock ticks; gone ones count 0
  local sum=0 p t
  for p in "$@"; do
    t=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || true)
    sum=$(( sum + ${t:-0} ))
  done
  echo "$sum"
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
origin_count() { grep -c "$1" "$work/logs/origin-access.log" || true; }

declare -A result
# wrk against a peer: requests per CPU-second of the peer's processes.
measure_hits() { # name port path conns pid...
  local name=$1 port=$2 path=$3 conns=$4; shift 4
  curl -s -o /dev/null "http://127.0.0.1:$port$path"; curl -s -o /dev/null "http://127.0.0.1:$port$path"
  local t0; t0=$(ticks "$@")
  local out; out=$(wrk -t2 -c"$conns" -d"${duration}s" "http://127.0.0.1:$port$path")
  local t1; t1=$(ticks "$@")
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local errs; errs=$(echo "$out" | awk '/Non-2xx/ {print $NF}'); errs=${errs:-0}
  local cpu; cpu=$(echo "($t1 - $t0) / $hz" | bc -l)
  local per; per=$(echo "$reqs / $cpu" | bc -l)
  printf '    %-8s %9.0f req/s  %5.2f cores  %9.0f req/CPU-s\n' "$name" "$(echo "$reqs / $duration" | bc -l)" "$(echo "$cpu / $duration" | bc -l)" "$per"
  if [ "$errs" != 0 ]; then echo "  $name answered $errs errors; the numbers above are not hits" >&2; exit 1; fi
  result["$name"]=$per
}
# The median and range of a list of numbers.
spread() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%.2fx (%.2f-%.2f over %d runs)", m, v[1], v[NR], NR}'; }

echo
echo "== cache hits (wrk -t2, ${duration}s a run, $rounds rounds; every process's CPU of the peer from /proc) =="
echo "   nginx-1: one worker; nginx-N: worker_processes auto (one per core); ferry: its default threads"
summary=()
for path in /hls/b/source/seg-0.ts /hls/b/source/index.m3u8; do
  for conns in 64 512; do
    echo "  $path c=$conns"
    r1=(); rn=()
    for round in $(seq "$rounds"); do
      # shellcheck disable=SC2046
      measure_hits nginx-1 $nginx_port $path $conns $(all_of "$work/nginx.pid")
      # shellcheck disable=SC2046
      measure_hits nginx-N $nginx2_port $path $conns $(all_of "$work/nginx2.pid")
      measure_hits ferry $ferry_port $path $conns "$ferry_pid"
      r1+=("$(echo "${result[ferry]} / ${result[nginx-1]}" | bc -l)")
      rn+=("$(echo "${result[ferry]} / ${result[nginx-N]}" | bc -l)")
    done
    line="$(printf '%-26s c=%-4s ferry/nginx-1 %s   ferry/nginx-N %s' "$path" "$conns" "$(spread "${r1[@]}")" "$(spread "${rn[@]}")")"
    echo "  => $line"
    summary+=("$line")
  done
done
echo
echo "== requests per CPU-second, ratios (median, min-max) =="
printf '  %s\n' "${summary[@]}"
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
# Idle connections first: memory freed after the fill below would hide them.
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
