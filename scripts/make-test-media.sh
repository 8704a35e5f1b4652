#!/usr/bin/env bash
# Generates Ferry's test streams with the ffmpeg CLI (apt-get install -y ffmpeg).
# Usage: scripts/make-test-media.sh OUT_DIR [SECONDS]   (default 4 s each)
# Each file stresses one thing real encoders send; every ingest path is tested on all.
set -euo pipefail
out=${1:?usage: make-test-media.sh OUT_DIR [SECONDS]}
t=${2:-4}
mkdir -p "$out"
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
x264=(-c:v libx264 -preset ultrafast -pix_fmt yuv420p)
aac=(-c:a aac -b:a 128k)
tone="sine=frequency=440:sample_rate=48000"

# What OBS sends by default: H.264, no B-frames, 2 s GOP, AAC 48 kHz.
ff -f lavfi -i "testsrc2=size=1280x720:rate=30" -f lavfi -i "$tone" -t "$t" "${x264[@]}" -b:v 2500k -g 60 -keyint_min 60 -sc_threshold 0 -bf 0 "${aac[@]}" -f flv "$out/h264-aac-720p30.flv"
# B-frames: pts != dts; composition offsets must survive every hop.
ff -f lavfi -i "testsrc2=size=1920x1080:rate=30" -f lavfi -i "$tone" -t "$t" -c:v libx264 -preset veryfast -pix_fmt yuv420p -profile:v high -bf 3 -b:v 4500k -g 60 -sc_threshold 0 "${aac[@]}" -f flv "$out/h264-aac-1080p30-bframes.flv"
# Irregular GOPs: scene cuts and a long GOP.
ff -f lavfi -i "testsrc2=size=1280x720:rate=30,hue=H=t*2" -f lavfi -i "$tone" -t "$t" "${x264[@]}" -b:v 2000k -g 150 "${aac[@]}" -f flv "$out/h264-aac-longgop.flv"
# 60 fps and 44.1 kHz audio: timescales that do not divide evenly.
ff -f lavfi -i "testsrc2=size=1280x720:rate=60" -f lavfi -i "sine=frequency=1000:sample_rate=44100" -t "$t" "${x264[@]}" -b:v 3000k -g 120 -sc_threshold 0 -c:a aac -b:a 96k -f flv "$out/h264-aac-720p60-44k.flv"
# Video only and audio only: nothing may wait for a track that never comes.
ff -f lavfi -i "testsrc2=size=1280x720:rate=30" -t "$t" "${x264[@]}" -b:v 1500k -g 60 -an -f flv "$out/h264-only.flv"
ff -f lavfi -i "$tone" -t "$t" -vn "${aac[@]}" -f flv "$out/aac-only.flv"
# Small and odd sizes.
ff -f lavfi -i "testsrc2=size=426x240:rate=25" -f lavfi -i "$tone" -t "$t" "${x264[@]}" -b:v 400k -g 50 -sc_threshold 0 "${aac[@]}" -f flv "$out/h264-aac-240p25.flv"
