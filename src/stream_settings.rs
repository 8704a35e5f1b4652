//! Per-stream settings an operator can change through the API (`PATCH
//! /api/v1/streams/NAME` with `settings`): the same overrides a `[[streams]]`
//! entry of the config file can carry, stored by the control plane and read
//! when the stream goes live.

use serde::{Deserialize, Serialize};
use utoipa::{PartialSchema, ToSchema};

/// HLS segment format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

/// What a stream's settings may say; anything else is refused. A
/// `[[streams]]` entry of the config file carries the same fields
/// (`config::StreamConfig` flattens this), and the API's form is drawn from
/// the schema derived here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// HLS segment format
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline, nullable = false)]
    pub hls_container: Option<HlsContainer>,
    /// Transcode to the HLS ladder
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub transcode: Option<bool>,
    /// Low-Latency HLS: partial segments and blocking reloads (fMP4)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub low_latency: Option<bool>,
    /// This stream's rungs instead of the configured ones
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline, nullable = false)]
    pub rungs: Option<Vec<transcode::RungConfig>>,
}

impl StreamSettings {
    /// Parses and checks settings as the API receives them.
    pub fn validate(value: &serde_json::Value) -> Result<serde_json::Value, String> {
        let s: StreamSettings = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        s.check()?;
        serde_json::to_value(s).map_err(|e| e.to_string())
    }

    /// Checks what the types cannot, for the API and the config file alike.
    pub fn check(&self) -> Result<(), String> {
        if let Some(rungs) = &self.rungs {
            if rungs.len() > MAX_RUNGS {
                return Err(format!("at most {MAX_RUNGS} rungs"));
            }
            for r in rungs {
                transcode::check_rung(r)?;
            }
        }
        Ok(())
    }

    /// These settings where they say something, `base`'s elsewhere: the API's
    /// settings over a stream's `[[streams]]` entry.
    pub fn over(&self, base: StreamSettings) -> StreamSettings {
        StreamSettings {
            hls_container: self.hls_container.or(base.hls_container),
            transcode: self.transcode.or(base.transcode),
            low_latency: self.low_latency.or(base.low_latency),
            rungs: self.rungs.clone().or(base.rungs),
        }
    }

    /// The settings stored for a stream (empty when none or unreadable).
    pub fn from_stored(value: &serde_json::Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    /// JSON Schema of the settings, for the UI's form: derived from the
    /// types, with the bounds that [`check`](Self::check) applies written in
    /// from the same constants (a derive takes only literals).
    pub fn schema() -> serde_json::Value {
        let mut schema = serde_json::to_value(<Self as PartialSchema>::schema())
            .unwrap_or_else(|_| serde_json::json!({"type": "object"}));
        schema["additionalProperties"] = false.into();
        // An inlined enum comes wrapped in a one-way `oneOf`: unwrapped, the
        // form sees `enum` where it looks.
        if let Some(props) = schema["properties"].as_object_mut() {
            for prop in props.values_mut() {
                let Some(obj) = prop.as_object_mut() else {
                    continue;
                };
                if let Some(serde_json::Value::Array(one)) = obj.get("oneOf")
                    && let [serde_json::Value::Object(inner)] = one.as_slice()
                {
                    let inner = inner.clone();
                    obj.remove("oneOf");
                    for (k, v) in inner {
                        obj.entry(k).or_insert(v);
                    }
                }
            }
        }
        let rungs = &mut schema["properties"]["rungs"];
        rungs["maxItems"] = MAX_RUNGS.into();
        let rung = &mut rungs["items"];
        rung["additionalProperties"] = false.into();
        for (field, range) in [
            ("height", transcode::RUNG_HEIGHTS),
            ("video_kbps", transcode::RUNG_KBPS),
        ] {
            rung["properties"][field]["minimum"] = (*range.start()).into();
            rung["properties"][field]["maximum"] = (*range.end()).into();
        }
        schema
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

    #[test]
    fn the_schema_is_the_types_with_the_bounds_check_applies() {
        let schema = StreamSettings::schema();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        let p = &schema["properties"];
        // What the UI draws its form from: booleans and an enum, with a label.
        assert_eq!(p["transcode"]["type"], "boolean", "{schema}");
        assert_eq!(p["low_latency"]["type"], "boolean", "{schema}");
        assert_eq!(
            p["hls_container"]["enum"],
            json!(["ts", "fmp4"]),
            "{schema}"
        );
        assert_eq!(p["transcode"]["description"], "Transcode to the HLS ladder");
        let rung = &p["rungs"]["items"];
        assert_eq!(p["rungs"]["maxItems"], MAX_RUNGS);
        assert_eq!(
            rung["required"],
            json!(["name", "height", "video_kbps"]),
            "{schema}"
        );
        assert_eq!(
            rung["properties"]["height"]["minimum"],
            *transcode::RUNG_HEIGHTS.start()
        );
        assert_eq!(
            rung["properties"]["video_kbps"]["maximum"],
            *transcode::RUNG_KBPS.end()
        );
        assert!(
            schema.get("required").is_none(),
            "every setting is optional: {schema}"
        );
    }

    #[test]
    fn api_settings_win_over_the_file_field_by_field() {
        let file = StreamSettings {
            transcode: Some(true),
            low_latency: Some(true),
            ..Default::default()
        };
        let api = StreamSettings {
            low_latency: Some(false),
            ..Default::default()
        };
        let s = api.over(file);
        assert_eq!(s.transcode, Some(true));
        assert_eq!(s.low_latency, Some(false));
        assert_eq!(s.hls_container, None);
    }
}
