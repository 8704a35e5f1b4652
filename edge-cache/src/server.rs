//! The edge's HTTP face: `GET`/`HEAD /hls/...` with the origin's headers plus
//! `Age` and `Cache-Status` (RFC 9211), single ranges, `If-None-Match`, and
//! an authenticated purge by stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;

use crate::edge::{Answer, CacheStatus, Edge, EdgeError, Refusal};
use crate::fill::{Fill, FillError};
use crate::object::{Head, Object};
use crate::range::{self, RangeRequest};
use hls::target::{BadTarget, CacheKey};

/// The name this cache gives itself in `Cache-Status`.
pub const CACHE_NAME: &str = "ferry";

#[derive(Clone)]
struct Front {
    edge: Edge,
    purge_token: Arc<str>,
}

/// The routes of a caching edge: `/hls/...` and `POST /purge/STREAM`
/// (bearer `purge_token`; empty disables it).
pub fn router(edge: Edge, purge_token: &str) -> Router {
    Router::new()
        .route("/hls/{*rest}", any(hls))
        .route("/purge/{stream}", post(purge))
        .with_state(Front {
            edge,
            purge_token: purge_token.into(),
        })
}

async fn hls(
    State(front): State<Front>,
    method: Method,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    // The client's address (set by the accept loop), for its share of fills.
    let client = peer.map(|p| p.0.0.ip());
    let key = match target(&front.edge, &method, version, &uri) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let answer = front.edge.get(&key, client).await;
    respond(&front.edge, &key, answer, &headers, method == Method::HEAD)
}

/// The cache key a request asks for, or the answer that refuses it: a
/// method other than GET/HEAD, an absolute URL, a path or query that is not
/// a cacheable HLS object.
fn target(
    edge: &Edge,
    method: &Method,
    version: Version,
    uri: &Uri,
) -> Result<CacheKey, Box<Response>> {
    if method != Method::GET && method != Method::HEAD {
        return Err(Box::new(
            (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "GET, HEAD")],
                "only GET and HEAD\n",
            )
                .into_response(),
        ));
    }
    // An HTTP/1 absolute-form target (`GET http://other/...`) asks for a
    // proxy: refused. (HTTP/2 always carries an authority.)
    if uri.authority().is_some() && version < Version::HTTP_2 {
        return Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            "absolute URLs are not served\n",
        )));
    }
    CacheKey::parse(uri.path(), uri.query()).map_err(|e| Box::new(refused(edge, e)))
}

/// The answer to a request target that is not a cacheable HLS object.
pub(crate) fn refused(edge: &Edge, e: BadTarget) -> Response {
    edge.metrics().refused.inc();
    let status = match e {
        BadTarget::TooLong => StatusCode::URI_TOO_LONG,
        BadTarget::NotHls | BadTarget::Invalid => StatusCode::BAD_REQUEST,
        BadTarget::BadQuery => {
            return plain(StatusCode::BAD_REQUEST, "invalid LL-HLS query\n");
        }
    };
    plain(status, "invalid path\n")
}

/// The HTTP answer to `answer`, the edge's result for `key`, given the
/// request's conditional and range headers; `head_only` for HEAD.
pub(crate) fn respond(
    edge: &Edge,
    key: &CacheKey,
    answer: Answer,
    headers: &HeaderMap,
    head_only: bool,
) -> Response {
    match answer {
        Answer::Cached { object, status } => {
            let traffic = edge.traffic().of(key.stream());
            cached(edge, &object, status, headers, head_only, traffic)
        }
        Answer::Streaming { head, fill, status } => {
            let traffic = edge.traffic().of(key.stream());
            streaming(edge, &head, fill, status, headers, head_only, traffic)
        }
        Answer::Failed(e) => failed(&e),
    }
}

/// A stream's request and byte counters ([`crate::metrics::StreamTraffic`]).
pub(crate) type Traffic = Option<(Counter, Counter)>;

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        text,
    )
        .into_response()
}

fn failed(e: &EdgeError) -> Response {
    let status = match e {
        EdgeError::Refused(Refusal::TooFar(_)) => StatusCode::BAD_REQUEST,
        EdgeError::Refused(Refusal::Client) => StatusCode::TOO_MANY_REQUESTS,
        EdgeError::Busy | EdgeError::Refused(Refusal::Stream | Refusal::Memory) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        EdgeError::Fill(
            FillError::Timeout | FillError::Unreachable(_) | FillError::WaitTimeout,
        ) => StatusCode::GATEWAY_TIMEOUT,
        EdgeError::Fill(_) => StatusCode::BAD_GATEWAY,
    };
    let mut r = plain(status, "");
    *r.body_mut() = Body::from(format!("{e}\n"));
    let cs = format!("{CACHE_NAME}; fwd=miss; detail=\"{}\"", status.as_u16());
    if let Ok(v) = HeaderValue::from_str(&cs) {
        r.headers_mut().insert("cache-status", v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

pub(crate) fn cache_status(status: CacheStatus, ttl: Option<i64>) -> String {
    let ttl = ttl.map(|t| format!("; ttl={t}")).unwrap_or_default();
    match status {
        CacheStatus::Hit => format!("{CACHE_NAME}; hit{ttl}"),
        CacheStatus::DiskHit => format!("{CACHE_NAME}; hit{ttl}; detail=disk"),
        CacheStatus::StaleWhileRevalidate => {
            format!("{CACHE_NAME}; hit{ttl}; detail=stale-while-revalidate")
        }
        CacheStatus::StaleIfError => format!("{CACHE_NAME}; hit{ttl}; detail=stale-if-error"),
        CacheStatus::Miss => format!("{CACHE_NAME}; fwd=miss"),
        CacheStatus::Collapsed => format!("{CACHE_NAME}; fwd=miss; collapsed"),
    }
}

/// The headers every answer from an object carries.
fn base_headers(head: &Head, etag: Option<&str>, age: u64, cache_status: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    if let Some(v) = &head.content_type {
        set(header::CONTENT_TYPE, v);
    }
    if let Some(v) = &head.cache_control {
        set(header::CACHE_CONTROL, v);
    }
    if let Some(v) = etag {
        set(header::ETAG, v);
    }
    if let Some(v) = &head.last_modified {
        set(header::LAST_MODIFIED, v);
    }
    set(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        head.allow_origin.as_deref().unwrap_or("*"),
    );
    set(header::AGE, &age.to_string());
    set(
        header::HeaderName::from_static("cache-status"),
        cache_status,
    );
    if head.status == 200 {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    h
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| none_match(v, etag))
}

/// Whether an `If-None-Match` value names `etag` (or `*`), weak or strong.
pub(crate) fn none_match(value: &HeaderValue, etag: &str) -> bool {
    let Ok(v) = value.to_str() else {
        return false;
    };
    v.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t.trim_start_matches("W/") == etag.trim_start_matches("W/")
    })
}

fn cached(
    edge: &Edge,
    object: &Object,
    status: CacheStatus,
    req: &HeaderMap,
    head_only: bool,
    traffic: Traffic,
) -> Response {
    let now = Instant::now();
    let cs = cache_status(status, Some(object.ttl_seconds(now)));
    let mut headers = base_headers(
        &object.head,
        Some(&object.etag),
        object.age(now).as_secs(),
        &cs,
    );
    let code = StatusCode::from_u16(object.head.status).unwrap_or(StatusCode::OK);
    if code == StatusCode::OK && etag_matches(req, &object.etag) {
        headers.remove(header::CONTENT_TYPE);
        if let Some((requests, _)) = &traffic {
            requests.inc();
        }
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let len = object.body.len() as u64;
    let (code, body) = match ranged(req, code, len, &mut headers) {
        Ok(Some((start, end))) => (
            StatusCode::PARTIAL_CONTENT,
            object.body.slice(start as usize..end as usize),
        ),
        Ok(None) => (code, object.body.clone()),
        Err(Unsatisfiable(r)) => return *r,
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let sent = if head_only { 0 } else { body.len() as u64 };
    if code.is_success()
        && let Some((requests, bytes)) = &traffic
    {
        requests.inc();
        bytes.inc_by(sent);
    }
    if head_only {
        return (code, headers).into_response();
    }
    edge.metrics().bytes_out.inc_by(sent);
    (code, headers, body).into_response()
}

/// A range that starts past the end: 416 with the object's length.
struct Unsatisfiable(Box<Response>);

/// Applies a `Range` header to a 200 answer of `len` bytes: the range to send
/// (with `Content-Range` set), none (whole), or the 416 answer.
fn ranged(
    req: &HeaderMap,
    code: StatusCode,
    len: u64,
    headers: &mut HeaderMap,
) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(value) = req.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    if code != StatusCode::OK {
        return Ok(None);
    }
    match range::parse(value, len) {
        RangeRequest::Whole => Ok(None),
        RangeRequest::Part { start, end } => {
            let cr = format!("bytes {start}-{}/{len}", end - 1);
            if let Ok(v) = HeaderValue::from_str(&cr) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            Ok(Some((start, end)))
        }
        RangeRequest::Unsatisfiable => {
            let mut h = headers.clone();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            h.remove(header::CONTENT_TYPE);
            Err(Unsatisfiable(Box::new(
                (StatusCode::RANGE_NOT_SATISFIABLE, h).into_response(),
            )))
        }
    }
}

fn streaming(
    edge: &Edge,
    head: &Head,
    fill: Arc<Fill>,
    status: CacheStatus,
    req: &HeaderMap,
    head_only: bool,
    traffic: Traffic,
) -> Response {
    let cs = cache_status(status, None);
    let mut headers = base_headers(head, head.etag.as_deref(), head.age.as_secs(), &cs);
    let code = StatusCode::from_u16(head.status).unwrap_or(StatusCode::OK);
    if code == StatusCode::OK
        && let Some(etag) = &head.etag
        && etag_matches(req, etag)
    {
        headers.remove(header::CONTENT_TYPE);
        if let Some((requests, _)) = &traffic {
            requests.inc();
        }
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    // A range needs the length; an origin that did not announce one gets the
    // whole object (a server may ignore Range).
    let (code, start, end) = match head.content_length {
        Some(len) => match ranged(req, code, len, &mut headers) {
            Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, Some(e)),
            Ok(None) => (code, 0, None),
            Err(Unsatisfiable(r)) => return *r,
        },
        None => (code, 0, None),
    };
    let length = match (end, head.content_length) {
        (Some(e), _) => Some(e - start),
        (None, n) => n,
    };
    if let Some(n) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let traffic = traffic.filter(|_| code.is_success());
    if let Some((requests, _)) = &traffic {
        requests.inc();
    }
    if head_only {
        return (code, headers).into_response();
    }
    let bytes_out = edge.metrics().bytes_out.clone();
    let stream_bytes = traffic.map(|(_, bytes)| bytes);
    let stream = fill
        .reader(start, end, edge.limits().body_timeout)
        .map(move |chunk| {
            if let Ok(c) = &chunk {
                bytes_out.inc_by(c.len() as u64);
                if let Some(b) = &stream_bytes {
                    b.inc_by(c.len() as u64);
                }
            }
            chunk
        });
    (code, headers, Body::from_stream(stream)).into_response()
}

async fn purge(
    State(front): State<Front>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if front.purge_token.is_empty() || !same(given.as_bytes(), front.purge_token.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a purge token is needed\n",
        )
            .into_response();
    }
    let purged = front.edge.purge(&stream);
    tracing::info!(%stream, purged, "purged by an operator");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"purged\":{purged}}}\n"),
    )
        .into_response()
}

/// Compares secrets in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
