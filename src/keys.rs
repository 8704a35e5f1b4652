//! The embedded default for publish keys: with no streams in the config, a `demo`
//! stream with a random key is created once and kept in the data directory, so a
//! first `ferry serve` can be published to and a restart keeps the same key.

use std::path::Path;

use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};

use crate::config::StreamConfig;

const FILE: &str = "streams.toml";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    streams: Vec<StreamConfig>,
}

/// Why the generated keys could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The failure.
        source: toml::de::Error,
    },
}

/// The configured streams, or the generated ones from the data dir (created if needed).
pub fn streams_or_generated(
    configured: &[StreamConfig],
    data_dir: &Path,
) -> Result<(Vec<StreamConfig>, bool), KeysError> {
    if !configured.is_empty() {
        return Ok((configured.to_vec(), false));
    }
    let path = data_dir.join(FILE);
    let shown = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored: Stored = toml::from_str(&text).map_err(|source| KeysError::Parse {
                path: shown,
                source,
            })?;
            Ok((stored.streams, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let stored = Stored {
                streams: vec![StreamConfig {
                    name: "demo".into(),
                    key: Alphanumeric.sample_string(&mut rand::rng(), 20),
                    settings: Default::default(),
                }],
            };
            let text = toml::to_string(&stored).unwrap_or_default();
            crate::state_files::write_atomic(&path, text.as_bytes()).map_err(|source| {
                KeysError::Io {
                    path: shown,
                    source,
                }
            })?;
            Ok((stored.streams, true))
        }
        Err(source) => Err(KeysError::Io {
            path: shown,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, created) = streams_or_generated(&[], dir.path()).expect("created");
        assert!(created);
        assert_eq!(first[0].name, "demo");
        assert_eq!(first[0].key.len(), 20);
        let (again, created) = streams_or_generated(&[], dir.path()).expect("read");
        assert!(!created);
        assert_eq!(again, first);
    }

    #[test]
    fn configured_streams_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = vec![StreamConfig {
            name: "a".into(),
            key: "b".into(),
            settings: Default::default(),
        }];
        assert_eq!(streams_or_generated(&conf, dir.path()).expect("ok").0, conf);
        assert!(!dir.path().join(FILE).exists());
    }
}
