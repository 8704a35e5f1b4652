//! Packages a recorded FLV file to MPEG-TS segments and playlists on disk with
//! Ferry's packager, the same code `ferry serve` runs, and prints the CPU time it
//! used. `benches/hls-package.sh` runs it beside `ffmpeg -c copy -f hls`.
//!
//! usage: hls-package FILE.flv OUT_DIR [REPEAT]

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, bail};
use hls::{Output, Packager, PackagerConfig};
use hls_package::{cpu_seconds, event, for_each_tag};
use media_core::Event;

fn store(out: &Path, outputs: Vec<Output>, bytes_out: &mut usize) -> anyhow::Result<()> {
    for o in outputs {
        match o {
            Output::Segment { path, data } | Output::Playlist { path, data } => {
                let p = out.join(path);
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                *bytes_out += data.len();
                std::fs::write(p, data)?;
            }
            Output::Delete { path } => {
                let _ = std::fs::remove_file(out.join(path));
            }
            Output::Part { .. } => {}
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(file), Some(out)) = (args.get(1), args.get(2)) else {
        bail!("usage: hls-package FILE.flv OUT_DIR [REPEAT]");
    };
    let repeat: usize = args.get(3).map_or(Ok(1), |r| r.parse()).context("REPEAT")?;
    let out = Path::new(out);
    let cpu_before = cpu_seconds();
    let mut bytes_out = 0usize;
    for _ in 0..repeat {
        let mut packager = Packager::new(PackagerConfig::default());
        let now = SystemTime::now();
        store(out, packager.handle(&Event::Started, now), &mut bytes_out)?;
        for_each_tag(file, |kind, ts, body| {
            if let Some(e) = event(kind, ts, &body)? {
                store(out, packager.handle(&e, SystemTime::now()), &mut bytes_out)?;
            }
            Ok(())
        })?;
        store(out, packager.handle(&Event::Stopped, now), &mut bytes_out)?;
    }
    println!(
        "ferry_cpu_s={:.3} bytes_out={bytes_out}",
        cpu_seconds() - cpu_before
    );
    Ok(())
}
