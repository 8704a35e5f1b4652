//! Runs Ferry's transcoding ladder (the code `ferry serve` runs) over a recorded
//! FLV file and packages every rung to HLS on disk; prints wall time, CPU time,
//! frames per second and the ladder's added latency. `benches/ladder.sh` runs it
//! beside the ffmpeg CLI doing the same ladder.
//!
//! usage: ladder-bench FILE.flv OUT_DIR [--realtime] [--zerolatency] [--rungs 720,480,360]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use hls::{Output, Packager, PackagerConfig};
use hls_package::{cpu_seconds, event, for_each_tag};
use media_core::{Event, Packet, TrackInfo, TrackKind};
use transcode::{LadderConfig, LadderMetrics, Rung, RungConfig, Sink};

/// When each source video frame (by pts) entered the ladder.
type FedAt = Arc<Mutex<HashMap<i64, Instant>>>;

/// Packages one rung to disk and records how long each frame took.
struct DiskSink {
    packager: Packager,
    dir: PathBuf,
    fed: FedAt,
    latencies: Arc<Mutex<Vec<Duration>>>,
}

impl DiskSink {
    fn store(&self, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Segment { path, data } | Output::Playlist { path, data } => {
                    let p = self.dir.join(path);
                    if let Some(dir) = p.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    let _ = std::fs::write(p, data);
                }
                Output::Delete { path } => {
                    let _ = std::fs::remove_file(self.dir.join(path));
                }
                Output::Part { .. } => {}
            }
        }
    }
}

impl Sink for DiskSink {
    fn track(&mut self, track: TrackInfo) {
        let out = self
            .packager
            .handle(&Event::Track(track.into()), SystemTime::now());
        self.store(out);
    }

    fn packet(&mut self, packet: Packet) {
        if packet.track == TrackKind::Video {
            let fed = self
                .fed
                .lock()
                .ok()
                .and_then(|f| f.get(&packet.pts.as_millis()).copied());
            if let (Some(fed), Ok(mut l)) = (fed, self.latencies.lock()) {
                l.push(fed.elapsed());
            }
        }
        let out = self
            .packager
            .handle(&Event::Packet(packet), SystemTime::now());
        self.store(out);
    }
}

impl Drop for DiskSink {
    fn drop(&mut self) {
        let out = self.packager.handle(&Event::Stopped, SystemTime::now());
        self.store(out);
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(file), Some(out)) = (args.get(1), args.get(2)) else {
        bail!(
            "usage: ladder-bench FILE.flv OUT_DIR [--realtime] [--zerolatency] [--rungs 720,480,360]"
        );
    };
    let realtime = args.iter().any(|a| a == "--realtime");
    let mut config = LadderConfig {
        passthrough: false,
        zerolatency: args.iter().any(|a| a == "--zerolatency"),
        ..LadderConfig::default()
    };
    if let Some(i) = args.iter().position(|a| a == "--threads") {
        config.threads = args.get(i + 1).context("--threads N")?.parse()?;
    }
    if let Some(i) = args.iter().position(|a| a == "--preset") {
        config.preset = args.get(i + 1).context("--preset NAME")?.clone();
    }
    if let Some(i) = args.iter().position(|a| a == "--rungs") {
        let list = args.get(i + 1).context("--rungs needs a list")?;
        config.rungs = list
            .split(',')
            .map(|h| -> anyhow::Result<RungConfig> {
                let height: u32 = h.parse()?;
                let kbps = match height {
                    h if h >= 1080 => 6000,
                    h if h >= 720 => 3000,
                    h if h >= 480 => 1200,
                    h if h >= 360 => 700,
                    _ => 400,
                };
                Ok(RungConfig {
                    name: format!("{height}p"),
                    height,
                    video_kbps: kbps,
                })
            })
            .collect::<anyhow::Result<_>>()?;
    }
    transcode::init()?;

    let mut events = Vec::new();
    for_each_tag(file, |kind, ts, body| {
        if let Some(e) = event(kind, ts, &body)? {
            events.push(e);
        }
        Ok(())
    })?;
    let frames = events
        .iter()
        .filter(|e| matches!(e, Event::Packet(p) if p.track == TrackKind::Video))
        .count();

    let out = Path::new(out).to_owned();
    let fed: FedAt = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let metrics = LadderMetrics::default();
    let segment = Duration::from_secs(2);
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let mut it = events.into_iter();
    let mut source = || {
        let e = it.next()?;
        if let Event::Packet(p) = &e
            && p.track == TrackKind::Video
        {
            if realtime {
                let due = start + Duration::from_millis(p.dts.as_millis().max(0) as u64);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            if let Ok(mut f) = fed.lock() {
                f.insert(p.pts.as_millis(), Instant::now());
            }
        }
        Some(e)
    };
    let mut sinks = |rung: &Rung| -> Option<Box<dyn Sink>> {
        let mut packager = Packager::new(PackagerConfig {
            variant: rung.name.clone(),
            cut_every_keyframe: true,
            ..PackagerConfig::default()
        });
        let _ = packager.handle(&Event::Started, SystemTime::now());
        Some(Box::new(DiskSink {
            packager,
            dir: out.clone(),
            fed: fed.clone(),
            latencies: latencies.clone(),
        }))
    };
    transcode::run(&config, segment, &mut source, &mut sinks, &metrics);
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let mut l = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "ferry frames={frames} wall_s={wall:.2} cpu_s={cpu:.2} fps={:.1} encoded={} decode_errors={} latency_ms_p50={:.1} latency_ms_p99={:.1} latency_ms_max={:.1}",
        frames as f64 / wall,
        metrics.frames_encoded.get(),
        metrics.decode_errors.get(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
    );
    Ok(())
}
