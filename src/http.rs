//! The HTTP side of `ferry serve` and `ferry control`: HLS objects from the
//! store and LL-HLS from the live packagers, the control API, the web UI,
//! Prometheus metrics and a health check, on one router.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hls::naming::ObjectKind;
use origin::{LiveAnswer, LiveHls};
use origin_store::{OriginStore, StoreError};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::runtime::Handle;

/// Every tokio runtime of the process, so task counts cover them all.
#[derive(Clone, Default)]
pub struct Runtimes(Arc<Mutex<Vec<Handle>>>);

impl Runtimes {
    pub fn add(&self, handle: Handle) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    fn alive_tasks(&self) -> usize {
        let extra: usize = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|h| h.metrics().num_alive_tasks())
            .sum();
        extra + Handle::current().metrics().num_alive_tasks()
    }
}

/// What the HTTP handlers share.
pub struct HttpState {
    pub registry: Registry,
    /// The bearer token `/metrics` needs (empty: none).
    pub metrics_token: String,
    pub runtimes: Runtimes,
    pub alive_tasks: Gauge,
    pub resident_bytes: Gauge,
}

impl HttpState {
    /// A registry with the process gauges added; the caller registers the
    /// rest. `/metrics` needs `metrics_token` when it is not empty.
    pub fn new(mut registry: Registry, metrics_token: &str) -> Self {
        let alive_tasks = Gauge::default();
        let resident_bytes = Gauge::default();
        registry.register(
            "runtime_alive_tasks",
            "Tokio tasks alive in this process",
            alive_tasks.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of this process",
            resident_bytes.clone(),
        );
        Self {
            registry,
            metrics_token: metrics_token.to_owned(),
            runtimes: Runtimes::default(),
            alive_tasks,
            resident_bytes,
        }
    }
}

/// `/metrics` and `/healthz`: what every role serves.
pub fn ops_router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}

/// The origin's HTTP face (`ferry serve`): the control plane's routes plus
/// `/hls/`, answered from the store and, for LL-HLS streams, from memory.
pub fn router(
    state: Arc<HttpState>,
    store: OriginStore,
    live: LiveHls,
    packaging: Option<origin::Packaging>,
    api: Router,
) -> Router {
    let hls = Router::new()
        .route("/hls/{*key}", get(hls_object))
        .with_state(HlsState {
            store,
            live,
            packaging,
        });
    control_router(state, api).merge(hls)
}

/// The control plane's face without HLS (`ferry control`): metrics, health,
/// the web UI and the API.
pub fn control_router(state: Arc<HttpState>, api: Router) -> Router {
    ops_router(state)
        .merge(crate::ui::router())
        .nest("/api/v1", api)
}

/// What the HLS routes read: the store, the low-latency streams' memory,
/// and which streams this node packages (`None`: it packages nothing, and
/// serves the store as it is).
#[derive(Clone)]
struct HlsState {
    store: OriginStore,
    live: LiveHls,
    packaging: Option<origin::Packaging>,
}

/// `GET /hls/STREAM/...`: playlists and segments from the origin store, with the
/// headers browser players need; a stream with Low-Latency HLS has its media
/// playlists (blocking reloads, delta updates) and parts served from memory.
async fn hls_object(
    State(HlsState {
        store,
        live,
        packaging,
    }): State<HlsState>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    peer: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
) -> Response {
    let kind = ObjectKind::of(&key);
    let cors = (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    let client = peer.map(|p| p.0.0.ip());
    if let Some(answer) = low_latency(&live, &key, query.as_deref().unwrap_or(""), client).await {
        return answer;
    }
    match store.get(&key).await {
        Ok(body) if stale_live_playlist(packaging.as_ref(), &key, &body) => (
            // Another origin (or this one, once its publisher is back) has
            // the playlist that moves: edges try the next; 503 with
            // Retry-After says "not here", not "broken".
            StatusCode::SERVICE_UNAVAILABLE,
            [cors, (header::RETRY_AFTER, "1")],
            "not live on this origin\n",
        )
            .into_response(),
        Ok(body) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, kind.content_type()),
                (header::CACHE_CONTROL, kind.cache_control()),
                cors,
            ],
            body,
        )
            .into_response(),
        Err(StoreError::NotFound(_) | StoreError::BadKey(_)) => {
            (StatusCode::NOT_FOUND, [cors], "not found\n").into_response()
        }
        Err(e) => {
            tracing::warn!(key, error = %e, "hls origin read failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [cors],
                "origin unavailable\n",
            )
                .into_response()
        }
    }
}

/// Whether `body`, stored at `key`, is a live media playlist (no
/// `EXT-X-ENDLIST`) of a stream this origin does not package now: left
/// behind when the origin died, it would freeze every viewer it reaches
/// while the stream goes on at another origin.
fn stale_live_playlist(packaging: Option<&origin::Packaging>, key: &str, body: &[u8]) -> bool {
    let Some(packaging) = packaging else {
        return false;
    };
    let stream = key.split('/').next().unwrap_or("");
    hls::naming::is_media_playlist(key)
        && !packaging.writes(stream)
        && !body
            .windows(b"#EXT-X-ENDLIST".len())
            .any(|w| w == b"#EXT-X-ENDLIST")
}

/// The low-latency answer for `key`, or `None` to serve it from the store.
async fn low_latency(
    live: &LiveHls,
    key: &str,
    query: &str,
    client: Option<std::net::IpAddr>,
) -> Option<Response> {
    let mut parts = key.split('/');
    let (Some(stream), Some(variant), Some(file), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let answer = if file == "index.m3u8" {
        live.playlist(stream, variant, query, client).await
    } else if hls::naming::is_part_name(file) {
        live.part(stream, variant, file, client).await
    } else {
        return None;
    };
    let cors = (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    Some(match answer {
        LiveAnswer::NotLive => return None,
        LiveAnswer::Playlist { body, blocking } => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
                // An answer to a blocking reload stays right (it holds at
                // least the part asked for): caches keep it, so every viewer
                // behind an edge waiting on the same part costs one request.
                // A plain reload changes with every part.
                (
                    header::CACHE_CONTROL,
                    if blocking {
                        "public, max-age=6"
                    } else {
                        "max-age=0, no-cache"
                    },
                ),
                cors,
            ],
            body,
        )
            .into_response(),
        LiveAnswer::Part(bytes) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "video/iso.segment"),
                (header::CACHE_CONTROL, "public, max-age=60, immutable"),
                cors,
            ],
            bytes,
        )
            .into_response(),
        LiveAnswer::BadRequest(why) => {
            (StatusCode::BAD_REQUEST, [cors], why + "\n").into_response()
        }
        LiveAnswer::NotFound => (StatusCode::NOT_FOUND, [cors], "not found\n").into_response(),
        LiveAnswer::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            [cors, (header::RETRY_AFTER, "1")],
            "too many requests held\n",
        )
            .into_response(),
        LiveAnswer::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            [cors],
            "the part did not come in time\n",
        )
            .into_response(),
    })
}

async fn metrics(State(state): State<Arc<HttpState>>, headers: axum::http::HeaderMap) -> Response {
    if !state.metrics_token.is_empty() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !media_core::auth::constant_time_eq(given.as_bytes(), state.metrics_token.as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need the bearer token ([http] metrics_token)\n",
            )
                .into_response();
        }
    }
    let tasks = state.runtimes.alive_tasks();
    state
        .alive_tasks
        .set(i64::try_from(tasks).unwrap_or(i64::MAX));
    state.resident_bytes.set(resident_bytes().unwrap_or(0));
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics could not be encoded\n".to_owned(),
        ),
    }
    .into_response()
}

/// Resident set size from `/proc/self/statm` (Linux); `None` elsewhere.
fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
