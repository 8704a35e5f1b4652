#!/usr/bin/env bash
# Packaging cost: Ferry's HLS packager and `ffmpeg -c copy -f hls` remux the same
# recorded stream to 2 s MPEG-TS segments (window 6, expired segments deleted);
# prints the CPU time of each and the ratio.
#   usage: benches/hls-package.sh [REPEAT]   (default 3 passes over a 300 s 720p30 stream, so process start-up is a small share)
set -euo pipefail
cd "$(dirname "$0")/.."
repeat=${1:-3}
command -v ffmpeg >/dev/null || { apt-get update -q && apt-get install -y -q ffmpeg; }
cargo build --release --locked -q -p hls-package
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -t 300 -c:v libx264 -preset ultrafast \
  -b:v 2500k -g 60 -sc_threshold 0 -bf 2 -c:a aac -b:a 128k -f flv "$work/in.flv"

mkdir -p "$work/ffmpeg" "$work/ferry"
TIMEFORMAT='%U %S'
ff=$( { time (for _ in $(seq "$repeat"); do
  ffmpeg -nostdin -loglevel error -y -i "$work/in.flv" -c copy -f hls -hls_time 2 -hls_list_size 6 \
    -hls_flags delete_segments -hls_segment_filename "$work/ffmpeg/%d.ts" "$work/ffmpeg/index.m3u8"
done) ; } 2>&1 | awk '{print $1 + $2}')
fe=$(target/release/hls-package "$work/in.flv" "$work/ferry" "$repeat" | sed -n 's/.*ferry_cpu_s=\([0-9.]*\).*/\1/p')
python3 - "$ff" "$fe" "$repeat" <<'PY'
import sys
ff, fe, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
print(f"input: 300 s of 720p30 H.264 2.5 Mbit/s + AAC, {n} passes")
print(f"ffmpeg -c copy -f hls : {ff:.2f} CPU-s ({ff/n*1000:.0f} ms per pass)")
print(f"ferry packager        : {fe:.2f} CPU-s ({fe/n*1000:.0f} ms per pass)")
print(f"ratio ferry/ffmpeg    : {fe/ff:.2f}x (target <= 0.5x)")
PY
