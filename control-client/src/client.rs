//! The control API from another process: leases for `ferry worker`, publish
//! authorisation and heartbeats for an origin that runs apart from control.

use std::time::Duration;

use media_core::auth::AuthError;

use crate::auth::{KeyLookup, LookupFuture};
use crate::leases::{LeaseFuture, Leases};
use crate::types::{
    DenyReason, EdgeRow, Heartbeat, HeartbeatReply, PublishCheck, PublishDenied, PublishGrant,
    TaskReport, TaskRow,
};

/// How long one request to the control plane may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a call to the control API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Build(String),
    /// No answer (connection refused, timeout).
    #[error("control unreachable: {0}")]
    Unreachable(String),
    /// The control plane answered with an error status.
    #[error("control answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// What it said.
        body: String,
    },
    /// The answer was not what the API promises.
    #[error("unreadable answer from control: {0}")]
    Decode(String),
}

/// `res` if it succeeded; else its status and body as the error.
async fn success(res: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = res.status();
    if status.is_success() {
        return Ok(res);
    }
    let body = res.text().await.unwrap_or_default();
    Err(ClientError::Status {
        status: status.as_u16(),
        body,
    })
}

/// The control API at one or more base URLs (e.g. `http://10.0.0.2:8080`:
/// control processes sharing one database), with a token. Calls go to the
/// one that answered last; one that does not answer, or answers with a
/// server error, is passed over for the next, in order.
pub struct ControlClient {
    bases: Vec<String>,
    /// The index in `bases` of the one that answered last.
    current: std::sync::atomic::AtomicUsize,
    token: String,
    client: reqwest::Client,
    /// The settings control sent with each stream's last publish grant.
    settings: dashmap::DashMap<String, serde_json::Value>,
}

impl ControlClient {
    /// A client for `bases`: one URL, or several separated by commas.
    pub fn new(bases: &str, token: &str) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let bases: Vec<String> = bases
            .split(',')
            .map(|b| b.trim().trim_end_matches('/').to_owned())
            .filter(|b| !b.is_empty())
            .collect();
        if bases.is_empty() {
            return Err(ClientError::Build("no control URL".into()));
        }
        Ok(Self {
            bases,
            current: std::sync::atomic::AtomicUsize::new(0),
            token: token.to_owned(),
            client,
            settings: dashmap::DashMap::new(),
        })
    }

    /// The control URL calls go to now.
    pub fn base(&self) -> &str {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.bases[i % self.bases.len()]
    }

    /// Sends the request `build` makes for a base URL: to the one that
    /// answered last, then to each other in turn while they do not answer
    /// or answer with a server error.
    async fn send(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        use std::sync::atomic::Ordering;
        let first = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for step in 0..self.bases.len() {
            let i = (first + step) % self.bases.len();
            let base = &self.bases[i];
            match build(base).bearer_auth(&self.token).send().await {
                Ok(res) if !res.status().is_server_error() || step + 1 == self.bases.len() => {
                    if i != first {
                        tracing::info!(control = %base, "control plane reached at another URL");
                        self.current.store(i, Ordering::Relaxed);
                    }
                    return Ok(res);
                }
                Ok(res) => last = Some(format!("{base} answered {}", res.status())),
                Err(e) => last = Some(format!("{base}: {e}")),
            }
        }
        Err(ClientError::Unreachable(last.unwrap_or_default()))
    }

    async fn post_raw<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<reqwest::Response, ClientError> {
        self.send(|base| self.client.post(format!("{base}/api/v1{path}")).json(body))
            .await
    }

    async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, ClientError> {
        let res = success(self.post_raw(path, body).await?).await?;
        if res.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        res.json()
            .await
            .map(Some)
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Reports this node to the registry (`POST /nodes/heartbeat`) with the
    /// streams live on it; returns the streams whose publisher must be kicked.
    pub async fn heartbeat(&self, beat: &Heartbeat) -> Result<Vec<String>, ClientError> {
        Ok(self
            .post::<_, HeartbeatReply>("/nodes/heartbeat", beat)
            .await?
            .map(|r| r.kick)
            .unwrap_or_default())
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let res = self
            .send(|base| self.client.get(format!("{base}/api/v1{path}")))
            .await?;
        success(res)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// The edges of the cluster and their state (`GET /edges`).
    pub async fn edges(&self) -> Result<Vec<EdgeRow>, ClientError> {
        self.get("/edges").await
    }

    /// The origins alive now (`GET /origins`): their URLs, streams and
    /// relay pins, for an edge that follows control instead of a list.
    pub async fn origins(&self) -> Result<Vec<crate::types::OriginRow>, ClientError> {
        self.get("/origins").await
    }

    /// The certificate fingerprints of the live origins' relays (`GET
    /// /relay/pins`): what an edge pins without hand copying.
    pub async fn relay_pins(&self) -> Result<Vec<String>, ClientError> {
        self.get("/relay/pins").await
    }

    /// Whether `token` is one an origin may serve over its relay (`POST
    /// /relay/verify`).
    pub async fn verify_edge(&self, token: &str) -> Result<bool, ClientError> {
        let check = crate::types::EdgeTokenCheck {
            token: token.to_owned(),
        };
        Ok(self
            .post::<_, crate::types::EdgeTokenVerdict>("/relay/verify", &check)
            .await?
            .is_some_and(|v| v.edge))
    }

    /// The settings of `stream` as of its last publish grant (`Null` if none).
    pub fn stream_settings(&self, stream: &str) -> serde_json::Value {
        self.settings
            .get(stream)
            .map(|s| s.value().clone())
            .unwrap_or_default()
    }

    /// Asks whether `key` may publish: the stream and its settings, or why not.
    async fn check_key(&self, key: &str) -> Result<Result<PublishGrant, DenyReason>, ClientError> {
        let res = self
            .post_raw("/auth/publish", &PublishCheck { key: key.into() })
            .await?;
        let status = res.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            let denied: PublishDenied = res
                .json()
                .await
                .map_err(|e| ClientError::Decode(e.to_string()))?;
            return Ok(Err(denied.reason));
        }
        success(res)
            .await?
            .json()
            .await
            .map(Ok)
            .map_err(|e| ClientError::Decode(e.to_string()))
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
                .await?;
            Ok(())
        })
    }
}

impl KeyLookup for ControlClient {
    fn lookup<'a>(&'a self, key: &'a str) -> LookupFuture<'a> {
        Box::pin(async move {
            match self.check_key(key).await {
                Ok(Ok(grant)) => {
                    self.settings.insert(grant.stream.clone(), grant.settings);
                    Ok(Ok(grant.stream))
                }
                Ok(Err(DenyReason::Disabled)) => Ok(Err(AuthError::Disabled)),
                Ok(Err(DenyReason::UnknownKey)) => Ok(Err(AuthError::UnknownKey)),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}
