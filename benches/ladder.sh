#!/usr/bin/env bash
# Transcoding ladder: Ferry's in-process ladder (one decode, per rung swscale +
# libx264 on its own thread) and the ffmpeg CLI (split + scale + one libx264 per
# rung, -f hls) transcode the same 60 s 720p30 source to a 720p/480p/360p ladder
# at the same x264 settings; prints wall time, CPU-seconds and fps of each and
# the ratios. Then Ferry's added latency, fed in real time with zerolatency.
#   usage: benches/ladder.sh [SECONDS]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v ffmpeg >/dev/null || { apt-get update -q && apt-get install -y -q ffmpeg; }
cargo build --release --locked -q -p ladder-bench
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -t "$secs" -c:v libx264 -preset ultrafast \
  -b:v 2500k -g 60 -bf 2 -c:a aac -b:a 128k -f flv "$work/in.flv"
# What OBS sends by default (no B-frames), for the latency run: with B-frames in
# the source the decoder itself must hold frames back to reorder them.
ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -t 20 -c:v libx264 -preset ultrafast \
  -b:v 2500k -g 60 -bf 0 -c:a aac -b:a 128k -f flv "$work/in-nob.flv"

# The same settings Ferry's rungs use: veryfast, VBV maxrate = bitrate, buffer
# 2 s, keyframes only at 2 s boundaries (no scene cuts), audio copied.
rung() { # label height kbps
  echo -map "[v$1]" -map 0:a -c:v libx264 -preset veryfast -b:v "$3k" -maxrate "$3k" \
    -bufsize "$(($3 * 2))k" -x264-params keyint=infinite:scenecut=0 \
    -force_key_frames 'expr:gte(t,n_forced*2)' -c:a copy \
    -f hls -hls_time 2 -hls_list_size 6 -hls_flags delete_segments \
    -hls_segment_filename "$work/ffmpeg/$1-%d.ts" "$work/ffmpeg/$1.m3u8"
}
mkdir -p "$work/ffmpeg" "$work/ferry"
TIMEFORMAT='%R %U %S'
# shellcheck disable=SC2046
ff=$( { time ffmpeg -nostdin -loglevel error -y -i "$work/in.flv" -filter_complex \
  "[0:v]split=3[a][b][c];[a]scale=-2:720[v720];[b]scale=-2:480[v480];[c]scale=-2:360[v360]" \
  $(rung 720 720 3000) $(rung 480 480 1200) $(rung 360 360 700) ; } 2>&1 | tail -1)
fe=$(target/release/ladder-bench "$work/in.flv" "$work/ferry" --rungs 720,480,360)
lat=$(target/release/ladder-bench "$work/in-nob.flv" "$work/ferry-rt" --rungs 720,480,360 --realtime --zerolatency)
latb=$(target/release/ladder-bench "$work/in.flv" "$work/ferry-rtb" --rungs 720,480,360 --realtime --zerolatency)
python3 - "$ff" "$fe" "$lat" "$secs" "$latb" <<'PY'
import sys
ff = [float(x) for x in sys.argv[1].split()]
kv = lambda s: dict(p.split("=") for p in s.split()[1:])
fe, lat, secs, latb = kv(sys.argv[2]), kv(sys.argv[3]), int(sys.argv[4]), kv(sys.argv[5])
frames = int(fe["frames"])
ff_wall, ff_cpu = ff[0], ff[1] + ff[2]
fe_wall, fe_cpu = float(fe["wall_s"]), float(fe["cpu_s"])
print(f"input: {secs} s of 720p30 H.264 + AAC ({frames} frames); ladder 720p 3M / 480p 1.2M / 360p 0.7M, x264 veryfast")
print(f"ffmpeg CLI : {ff_wall:6.2f} s wall {ff_cpu:6.2f} CPU-s {frames/ff_wall:6.1f} fps")
print(f"ferry      : {fe_wall:6.2f} s wall {fe_cpu:6.2f} CPU-s {frames/fe_wall:6.1f} fps")
print(f"throughput ferry/ffmpeg: {ff_wall/fe_wall:.2f}x (target >= 1.3x)")
print(f"CPU-s      ferry/ffmpeg: {fe_cpu/ff_cpu:.2f}x (target <= 1.0x)")
print(f"CPU-s per core used: ffmpeg {ff_cpu/ff_wall:.2f} cores, ferry {fe_cpu/fe_wall:.2f} cores (2 available)")
print(f"added latency (source packet in -> every rung's packet out), real-time feed, zerolatency (target < 100 ms):")
print(f"  source without B-frames (OBS default): p50 {lat['latency_ms_p50']} ms, p99 {lat['latency_ms_p99']} ms, max {lat['latency_ms_max']} ms")
print(f"  source with 2 B-frames (decoder reorder delay included): p50 {latb['latency_ms_p50']} ms, p99 {latb['latency_ms_p99']} ms, max {latb['latency_ms_max']} ms")
PY
