//! Which rungs a source gets: configured rungs, minus those above the source,
//! sized to keep the source's aspect ratio with even dimensions.

use serde::{Deserialize, Serialize};

/// One configured rung: a height and a video bitrate. The width follows the
/// source's aspect ratio.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RungConfig {
    /// The variant's name in paths and the hub (`720p`): letters, digits, `_`, `-`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub name: String,
    /// Output height in pixels.
    pub height: u32,
    /// Target (and VBV maximum) video bitrate in kbit/s.
    pub video_kbps: u32,
}

impl RungConfig {
    fn new(name: &str, height: u32, video_kbps: u32) -> Self {
        Self {
            name: name.to_owned(),
            height,
            video_kbps,
        }
    }
}

/// How a stream is transcoded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LadderConfig {
    /// The rungs, any order.
    pub rungs: Vec<RungConfig>,
    /// List the untouched source as the top variant too. Its keyframes then
    /// decide where every rung's segments start, so all variants line up.
    pub passthrough: bool,
    /// x264 preset (`ultrafast` … `placebo`).
    pub preset: String,
    /// x264 `tune=zerolatency`: no B-frames, no lookahead, sliced threads; the
    /// ladder adds about a frame of latency instead of a dozen.
    pub zerolatency: bool,
    /// VBV buffer as a multiple of the bitrate (1.0 = one second).
    pub vbv_seconds: f32,
    /// Encoder threads per rung; 0 lets x264 choose.
    pub threads: u32,
}

impl Default for LadderConfig {
    fn default() -> Self {
        Self {
            rungs: vec![
                RungConfig::new("1080p", 1080, 6000),
                RungConfig::new("720p", 720, 3000),
                RungConfig::new("480p", 480, 1200),
                RungConfig::new("360p", 360, 700),
                RungConfig::new("240p", 240, 400),
            ],
            passthrough: true,
            preset: "veryfast".into(),
            zerolatency: false,
            vbv_seconds: 2.0,
            threads: 0,
        }
    }
}

/// A rung sized for one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rung {
    /// Variant name.
    pub name: String,
    /// Output width, even.
    pub width: u32,
    /// Output height, even.
    pub height: u32,
    /// Video bitrate, bits per second.
    pub bitrate: u64,
}

/// The rungs for a `width`×`height` source, tallest first: rungs taller than
/// the source are dropped (never upscale), so is a rung as tall as the source
/// when the source itself is listed (passthrough), and two rungs never share a
/// size.
pub fn plan(config: &LadderConfig, width: u32, height: u32) -> Vec<Rung> {
    let mut rungs: Vec<Rung> = config
        .rungs
        .iter()
        .filter(|r| r.height <= height && r.height >= 2 && width >= 2)
        .filter(|r| !(config.passthrough && r.height == height))
        .map(|r| {
            let h = even(r.height);
            // Nearest even width: 1280x720 at 480 lines is 854 wide, as ffmpeg's
            // `scale=-2:480` makes it.
            let w = ((u64::from(width) * u64::from(h) + u64::from(height))
                / (2 * u64::from(height))
                * 2) as u32;
            Rung {
                name: r.name.clone(),
                width: w.max(2),
                height: h,
                bitrate: u64::from(r.video_kbps) * 1000,
            }
        })
        .collect();
    rungs.sort_by(|a, b| b.height.cmp(&a.height).then(b.bitrate.cmp(&a.bitrate)));
    rungs.dedup_by(|b, a| a.height == b.height);
    rungs
}

fn even(v: u32) -> u32 {
    v & !1
}

/// Whether `name` may name a variant (it becomes a path segment and part of a
/// hub stream name).
pub fn valid_rung_name(name: &str) -> bool {
    name.len() <= 32 && name != "source" && media_core::path::valid_name(name)
}

/// Rung heights accepted, in pixels.
pub const RUNG_HEIGHTS: std::ops::RangeInclusive<u32> = 16..=4320;
/// Rung video bitrates accepted, in kbit/s.
pub const RUNG_KBPS: std::ops::RangeInclusive<u32> = 50..=100_000;

/// Checks a configured rung, from the config file or the API alike: what is
/// wrong, in a sentence.
pub fn check_rung(r: &RungConfig) -> Result<(), String> {
    if !valid_rung_name(&r.name) {
        return Err(format!(
            "rung name {:?}: use letters, digits, '_' or '-' (not \"source\")",
            r.name
        ));
    }
    if !RUNG_HEIGHTS.contains(&r.height) {
        return Err(format!(
            "rung {}: height must be {}..{}",
            r.name,
            RUNG_HEIGHTS.start(),
            RUNG_HEIGHTS.end()
        ));
    }
    if !RUNG_KBPS.contains(&r.video_kbps) {
        return Err(format!(
            "rung {}: video_kbps must be {}..{}",
            r.name,
            RUNG_KBPS.start(),
            RUNG_KBPS.end()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(rungs: &[Rung]) -> Vec<(u32, u32)> {
        rungs.iter().map(|r| (r.width, r.height)).collect()
    }

    #[test]
    fn a_1080p_source_gets_every_default_rung() {
        let transcode_all = LadderConfig {
            passthrough: false,
            ..LadderConfig::default()
        };
        let r = plan(&transcode_all, 1920, 1080);
        assert_eq!(
            sizes(&r),
            [
                (1920, 1080),
                (1280, 720),
                (854, 480),
                (640, 360),
                (426, 240)
            ]
        );
        assert_eq!(r[1].bitrate, 3_000_000);
    }

    #[test]
    fn rungs_above_the_source_are_dropped() {
        let transcode_all = LadderConfig {
            passthrough: false,
            ..LadderConfig::default()
        };
        assert_eq!(sizes(&plan(&transcode_all, 426, 240)), [(426, 240)]);
        assert!(plan(&transcode_all, 320, 180).is_empty());
    }

    #[test]
    fn with_passthrough_the_source_replaces_the_rung_of_its_height() {
        let r = plan(&LadderConfig::default(), 1920, 1080);
        assert_eq!(sizes(&r), [(1280, 720), (854, 480), (640, 360), (426, 240)]);
        assert!(plan(&LadderConfig::default(), 426, 240).is_empty());
    }

    #[test]
    fn odd_and_portrait_sources_keep_their_aspect_with_even_sizes() {
        let r = plan(&LadderConfig::default(), 1080, 1920);
        assert_eq!(
            r[0],
            Rung {
                name: "1080p".into(),
                width: 608,
                height: 1080,
                bitrate: 6_000_000
            }
        );
        let r = plan(&LadderConfig::default(), 1001, 721);
        assert_eq!(r[0].height, 720);
        assert!(r.iter().all(|r| r.width % 2 == 0 && r.height % 2 == 0));
        assert_eq!(sizes(&r)[0], (1000, 720));
    }

    #[test]
    fn duplicate_heights_are_listed_once() {
        let config = LadderConfig {
            rungs: vec![
                RungConfig::new("a", 360, 500),
                RungConfig::new("b", 360, 900),
            ],
            ..LadderConfig::default()
        };
        let r = plan(&config, 1280, 720);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "b");
    }

    #[test]
    fn rung_names_are_path_safe() {
        assert!(valid_rung_name("720p"));
        assert!(valid_rung_name("low-1"));
        for bad in ["", "a/b", "..", "source", "x y"] {
            assert!(!valid_rung_name(bad), "{bad}");
        }
    }
}
