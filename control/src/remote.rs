//! The control API from another process: leases for `ferry worker`, publish
//! authorisation and heartbeats for an origin that runs apart from control.

use std::time::Duration;

use crate::db::TaskRow;
use crate::worker::{LeaseFuture, Leases, TaskReport};

/// The control API at `base` (e.g. `http://10.0.0.2:8080`), with a token.
pub struct ControlClient {
    base: String,
    token: String,
    client: reqwest::Client,
    /// The settings control sent with each stream's last publish grant.
    settings: dashmap::DashMap<String, serde_json::Value>,
}

impl ControlClient {
    /// A client for `base`.
    pub fn new(base: &str, token: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            client,
            settings: dashmap::DashMap::new(),
        })
    }

    async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, String> {
        let res = self
            .client
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("control unreachable: {e}"))?;
        let status = res.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            let text = res.text().await.unwrap_or_default();
            return Err(format!("forbidden: {text}"));
        }
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            return Err(format!("control answered {status}: {text}"));
        }
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        res.json().await.map(Some).map_err(|e| e.to_string())
    }
}

impl ControlClient {
    /// Reports this node to the registry (`POST /nodes/heartbeat`) with the
    /// streams live on it; returns the streams whose publisher must be kicked.
    pub async fn heartbeat(
        &self,
        id: &str,
        role: &str,
        address: &str,
        load: f64,
        live: &[String],
    ) -> Result<Vec<String>, String> {
        let body = serde_json::json!({
            "id": id,
            "role": role,
            "address": address,
            "version": env!("CARGO_PKG_VERSION"),
            "load": load,
            "live": live,
        });
        Ok(self
            .post::<_, crate::api::HeartbeatReply>("/nodes/heartbeat", &body)
            .await?
            .map(|r| r.kick)
            .unwrap_or_default())
    }
}

impl Leases for ControlClient {
    fn claim<'a>(&'a self, worker: &'a str) -> LeaseFuture<'a, Vec<TaskRow>> {
        Box::pin(async move {
            Ok(self
                .post::<_, Vec<TaskRow>>(&format!("/workers/{worker}/claim"), &())
                .await?
                .unwrap_or_default())
        })
    }

    fn renew<'a>(&'a self, worker: &'a str, running: Vec<TaskReport>) -> LeaseFuture<'a, Vec<i64>> {
        Box::pin(async move {
            Ok(self
                .post::<_, Vec<i64>>(&format!("/workers/{worker}/renew"), &running)
                .await?
                .unwrap_or_default())
        })
    }

    fn release<'a>(&'a self, worker: &'a str, ids: Vec<i64>) -> LeaseFuture<'a, ()> {
        Box::pin(async move {
            self.post::<_, serde_json::Value>(&format!("/workers/{worker}/release"), &ids)
                .await
                .map(|_| ())
        })
    }
}

impl ControlClient {
    /// The settings of `stream` as of its last publish grant (`Null` if none).
    pub fn stream_settings(&self, stream: &str) -> serde_json::Value {
        self.settings
            .get(stream)
            .map(|s| s.value().clone())
            .unwrap_or_default()
    }
}

impl crate::auth::KeyLookup for ControlClient {
    fn lookup<'a>(&'a self, key: &'a str) -> crate::auth::LookupFuture<'a> {
        use rtmp::auth::AuthError;
        Box::pin(async move {
            let body = serde_json::json!({ "key": key });
            match self
                .post::<_, crate::api::PublishGrant>("/auth/publish", &body)
                .await
            {
                Ok(Some(grant)) => {
                    self.settings.insert(grant.stream.clone(), grant.settings);
                    Ok(Ok(grant.stream))
                }
                Ok(None) => Err("control gave no answer".into()),
                Err(e) if e.starts_with("forbidden") => Ok(Err(if e.contains("disabled") {
                    AuthError::Disabled
                } else {
                    AuthError::UnknownKey
                })),
                Err(e) => Err(e),
            }
        })
    }
}
