//! Streams, their settings and their publish keys (stored hashed).

use serde::Serialize;

use super::{Db, DbError, Row, args, now_s};
use crate::secret;

/// A stream as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StreamRow {
    /// Id.
    pub id: i64,
    /// Public name.
    pub name: String,
    /// May go live.
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Settings that override the configuration file for this stream (HLS
    /// segment format, transcoding ladder); validated by the server that owns
    /// them; applied when the stream next goes live.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
}

/// A publish key as operators see it (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyRow {
    /// Id.
    pub id: i64,
    /// Masked key, e.g. `3fa9…(48 chars)`.
    pub hint: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, if revoked.
    pub revoked_at: Option<i64>,
}

const STREAM_COLUMNS: &str = "SELECT id, name, enabled, created_at, settings FROM streams";

fn stream_row(r: &Row) -> Result<StreamRow, DbError> {
    Ok(StreamRow {
        id: r.int(0)?,
        name: r.text(1)?,
        enabled: r.bool(2)?,
        created_at: r.int(3)?,
        settings: serde_json::from_str(&r.text(4)?).unwrap_or_else(|_| serde_json::json!({})),
    })
}

impl Db {
    /// Every stream, by name.
    pub async fn streams(&self) -> Result<Vec<StreamRow>, DbError> {
        self.query(&format!("{STREAM_COLUMNS} ORDER BY name"), args![])
            .await?
            .iter()
            .map(stream_row)
            .collect()
    }

    /// One stream.
    pub async fn stream(&self, name: &str) -> Result<StreamRow, DbError> {
        let row = self
            .query_opt(&format!("{STREAM_COLUMNS} WHERE name = ?1"), args![name])
            .await?
            .ok_or_else(|| DbError::NotFound(format!("stream {name:?}")))?;
        stream_row(&row)
    }

    /// Creates a stream.
    pub async fn create_stream(&self, name: &str, enabled: bool) -> Result<StreamRow, DbError> {
        let created = self
            .exec(
                "INSERT INTO streams (name, enabled, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                args![name, enabled, now_s()],
            )
            .await?;
        if created == 0 {
            return Err(DbError::Exists(format!("stream {name:?}")));
        }
        self.stream(name).await
    }

    /// Enables or disables a stream.
    pub async fn set_stream_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<StreamRow, DbError> {
        let n = self
            .exec(
                "UPDATE streams SET enabled = ?2 WHERE name = ?1",
                args![name, enabled],
            )
            .await?;
        if n == 0 {
            return Err(DbError::NotFound(format!("stream {name:?}")));
        }
        self.stream(name).await
    }

    /// Replaces a stream's settings.
    pub async fn set_stream_settings(
        &self,
        name: &str,
        settings: &serde_json::Value,
    ) -> Result<StreamRow, DbError> {
        let n = self
            .exec(
                "UPDATE streams SET settings = ?2 WHERE name = ?1",
                args![name, settings.to_string()],
            )
            .await?;
        if n == 0 {
            return Err(DbError::NotFound(format!("stream {name:?}")));
        }
        self.stream(name).await
    }

    /// Deletes a stream with its keys and tasks.
    pub async fn delete_stream(&self, name: &str) -> Result<(), DbError> {
        let n = self
            .exec("DELETE FROM streams WHERE name = ?1", args![name])
            .await?;
        if n == 0 {
            return Err(DbError::NotFound(format!("stream {name:?}")));
        }
        Ok(())
    }

    /// A stream's keys, newest first.
    pub async fn keys(&self, stream: &str) -> Result<Vec<KeyRow>, DbError> {
        let id = self.stream(stream).await?.id;
        self.query(
            "SELECT id, hint, created_at, revoked_at FROM stream_keys WHERE stream_id = ?1 ORDER BY id DESC",
            args![id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(KeyRow {
                id: r.int(0)?,
                hint: r.text(1)?,
                created_at: r.int(2)?,
                revoked_at: r.opt_int(3)?,
            })
        })
        .collect()
    }

    /// Adds `key` to a stream; returns its id.
    pub async fn add_key(&self, stream: &str, key: &str) -> Result<i64, DbError> {
        let id = self.stream(stream).await?.id;
        let row = self
            .query_opt(
                "INSERT INTO stream_keys (stream_id, hash, hint, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (hash) DO NOTHING RETURNING id",
                args![id, secret::hash(key), secret::hint(key), now_s()],
            )
            .await?
            .ok_or_else(|| DbError::Exists("that key".into()))?;
        row.int(0)
    }

    /// Revokes a key of a stream.
    pub async fn revoke_key(&self, stream: &str, key_id: i64) -> Result<(), DbError> {
        let id = self.stream(stream).await?.id;
        let n = self
            .exec(
                "UPDATE stream_keys SET revoked_at = ?3 WHERE id = ?1 AND stream_id = ?2 AND revoked_at IS NULL",
                args![key_id, id, now_s()],
            )
            .await?;
        if n == 0 {
            return Err(DbError::NotFound(format!(
                "active key {key_id} of stream {stream:?}"
            )));
        }
        Ok(())
    }

    /// The stream an active key publishes and whether it is enabled.
    pub async fn stream_for_key(&self, key: &str) -> Result<Option<(String, bool)>, DbError> {
        Ok(self
            .grant_for_key(key)
            .await?
            .map(|(name, enabled, _)| (name, enabled)))
    }

    /// The stream an active key publishes, whether it is enabled, and its
    /// settings: what a publish check answers, in one query.
    pub async fn grant_for_key(
        &self,
        key: &str,
    ) -> Result<Option<(String, bool, serde_json::Value)>, DbError> {
        let row = self
            .query_opt(
                "SELECT s.name, s.enabled, s.settings FROM stream_keys k JOIN streams s ON s.id = k.stream_id
                 WHERE k.hash = ?1 AND k.revoked_at IS NULL",
                args![secret::hash(key)],
            )
            .await?;
        row.map(|r| {
            let settings =
                serde_json::from_str(&r.text(2)?).unwrap_or_else(|_| serde_json::json!({}));
            Ok((r.text(0)?, r.bool(1)?, settings))
        })
        .transpose()
    }
}
