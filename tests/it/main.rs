//! Ferry's integration tests, in one binary: each module drives real
//! processes (ferry, ffmpeg, ffprobe, rtmpdump, nginx, an S3 server,
//! PostgreSQL, Chromium) on loopback. One binary links the whole stack once,
//! where one per file linked it two dozen times.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

mod autoscale;
mod binary;
mod control;
mod director;
mod edge;
mod edge_play;
mod enhanced_rtmp;
mod hardening_control;
mod hardening_http;
mod hardening_rtmp;
mod hls;
mod hls_s3;
mod ll_hls;
mod manifests;
mod openapi;
mod redundant_ll;
mod relay;
mod restream;
mod rtmp_behaviour;
mod rtmp_samples;
mod rtmps;
mod soak;
mod split;
mod transcode;
mod ui;
mod workers;
