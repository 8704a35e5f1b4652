#!/usr/bin/env bash
# HLS latency: from the RTMP packet that closes a segment to the playlist naming
# it being readable over HTTP, with the local-directory store and with an
# S3-compatible server (s3s-fs) on loopback. Prints median and p99 per store.
#   usage: benches/hls-latency.sh [SECONDS]   (default 60 s of 720p30, 2 s segments)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
scripts/setup.sh >/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
s3s=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
cargo build --release --locked -q -p ferry -p hls-package
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -t "$secs" -c:v libx264 -preset veryfast \
  -b:v 2500k -g 60 -sc_threshold 0 -c:a aac -b:a 128k -f flv "$work/in.flv"

run() { # label extra-config
  local dir="$work/$1"; mkdir -p "$dir"
  cat > "$dir/ferry.toml" <<TOML
data_dir = "$dir/data"
log = "warn"
[rtmp]
listen = "127.0.0.1:19361"
[http]
listen = "127.0.0.1:18091"
[[streams]]
name = "bench"
key = "benchkey"
$2
TOML
  target/release/ferry serve --config "$dir/ferry.toml" & local pid=$!; pids+=("$pid")
  sleep 1
  printf '%-6s ' "$1"
  target/release/hls-latency 127.0.0.1:19361 127.0.0.1:18091 benchkey bench "$work/in.flv"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

run local ""
mkdir -p "$work/s3/hls"
"$s3s" --access-key benchaccess --secret-key benchsecretkey --host 127.0.0.1 --port 19400 "$work/s3" >/dev/null 2>&1 & pids+=("$!")
sleep 1
run s3 '[store]
kind = "s3"
s3_endpoint = "http://127.0.0.1:19400"
s3_bucket = "hls"
s3_access_key_id = "benchaccess"
s3_secret_access_key = "benchsecretkey"'
echo "targets: local <= 50 ms, S3 on loopback <= 200 ms (median and p99)"
