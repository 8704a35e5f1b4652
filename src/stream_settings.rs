//! Per-stream settings an operator can change through the API (`PATCH
//! /api/v1/streams/NAME` with `settings`): the same overrides a `[[streams]]`
//! entry of the config file can carry, stored by the control plane and read
//! when the stream goes live.

use serde::{Deserialize, Serialize};

/// HLS segment format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HlsContainer {
    /// MPEG-TS segments.
    Ts,
    /// Fragmented MP4 (CMAF) segments with an init segment.
    Fmp4,
}

impl From<HlsContainer> for hls::Container {
    fn from(c: HlsContainer) -> Self {
        match c {
            HlsContainer::Ts => hls::Container::Ts,
            HlsContainer::Fmp4 => hls::Container::Fmp4,
        }
    }
}

/// Rungs a stream may ask for at most.
const MAX_RUNGS: usize = 8;

/// What a stream's settings may say; anything else is refused.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// HLS segment format: `ts` or `fmp4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hls_container: Option<HlsContainer>,
    /// Transcode this stream (the ladder of `[transcode.ladder]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcode: Option<bool>,
    /// Low-Latency HLS (parts, blocking reloads; fMP4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_latency: Option<bool>,
    /// This stream's rungs instead of the configured ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rungs: Option<Vec<transcode::RungConfig>>,
}

impl StreamSettings {
    /// Parses and checks settings as the API receives them.
    pub fn validate(value: &serde_json::Value) -> Result<serde_json::Value, String> {
        let s: StreamSettings = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        if let Some(rungs) = &s.rungs {
            if rungs.len() > MAX_RUNGS {
                return Err(format!("at most {MAX_RUNGS} rungs"));
            }
            for r in rungs {
                transcode::check_rung(r)?;
            }
        }
        serde_json::to_value(s).map_err(|e| e.to_string())
    }

    /// The settings stored for a stream (empty when none or unreadable).
    pub fn from_stored(value: &serde_json::Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    /// JSON Schema of the settings, for the UI's form.
    pub fn schema() -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "hls_container": {"type": "string", "enum": ["ts", "fmp4"], "description": "HLS segment format"},
                "transcode": {"type": "boolean", "description": "Transcode to the HLS ladder"},
                "low_latency": {"type": "boolean", "description": "Low-Latency HLS: partial segments and blocking reloads (fMP4)"},
                "rungs": {
                    "type": "array",
                    "maxItems": MAX_RUNGS,
                    "description": "This stream's rungs instead of the configured ones",
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["name", "height", "video_kbps"],
                        "properties": {
                            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"},
                            "height": {
                                "type": "integer",
                                "minimum": transcode::RUNG_HEIGHTS.start(),
                                "maximum": transcode::RUNG_HEIGHTS.end()
                            },
                            "video_kbps": {
                                "type": "integer",
                                "minimum": transcode::RUNG_KBPS.start(),
                                "maximum": transcode::RUNG_KBPS.end()
                            }
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_are_checked() {
        assert!(StreamSettings::validate(&json!({})).is_ok());
        assert!(
            StreamSettings::validate(&json!({"transcode": true, "hls_container": "fmp4"})).is_ok()
        );
        let rung = |name: &str, height: u32, kbps: u32| json!({"rungs": [{"name": name, "height": height, "video_kbps": kbps}]});
        assert!(StreamSettings::validate(&rung("360p", 360, 700)).is_ok());
        for bad in [
            json!({"colour": 1}),
            json!({"hls_container": "mkv"}),
            json!([1]),
            rung("a/b", 360, 700),
            rung("x", 8, 700),
            rung("x", 360, 1),
        ] {
            assert!(StreamSettings::validate(&bad).is_err(), "{bad}");
        }
    }
}
