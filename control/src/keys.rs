//! Publish keys as the RTMP origin in this process asks for them: the
//! stream a key publishes, with the settings it had when the key was
//! checked, kept for the pipeline that starts next (as an origin apart from
//! control keeps those that came with its grant).

use std::sync::Arc;

use control_client::auth::LookupFuture;
use dashmap::DashMap;
use media_core::auth::AuthError;

use crate::db::Db;

/// Keys looked up in the database, with each stream's settings as of its
/// last successful lookup.
pub struct StreamKeys {
    db: Arc<Db>,
    settings: DashMap<String, serde_json::Value>,
}

impl StreamKeys {
    /// Keys in `db`.
    pub fn new(db: Arc<Db>) -> Self {
        Self {
            db,
            settings: DashMap::new(),
        }
    }

    /// The settings of `stream` as of its last lookup (`Null` if none).
    pub fn settings(&self, stream: &str) -> serde_json::Value {
        self.settings
            .get(stream)
            .map(|s| s.value().clone())
            .unwrap_or_default()
    }
}

impl control_client::KeyLookup for StreamKeys {
    fn lookup<'a>(&'a self, key: &'a str) -> LookupFuture<'a> {
        Box::pin(async move {
            match self.db.grant_for_key(key).await {
                Ok(Some((name, true, settings))) => {
                    self.settings.insert(name.clone(), settings);
                    Ok(Ok(name))
                }
                Ok(Some((_, false, _))) => Ok(Err(AuthError::Disabled)),
                Ok(None) => Ok(Err(AuthError::UnknownKey)),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}
