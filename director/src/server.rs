//! The director's HTTP face: `/hls/STREAM/master.m3u8` (a new viewer
//! token in every variant URI), media playlists rewritten onto the viewer's
//! edge, and a redirect for anything else under `/hls/`.

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hls::target::CacheKey;

use crate::director::{Director, DirectorError};

/// The routes of a director.
pub fn router(director: Director) -> Router {
    Router::new()
        .route("/hls/{*rest}", get(hls))
        .route("/director/placement", get(placement))
        .with_state(director)
}

/// Where each stream sits and why: edges with their viewers and bound,
/// streams with their viewers and planned share per edge.
async fn placement(State(director): State<Director>) -> Response {
    let report = director.placement();
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(report)).into_response()
}

/// How long a request to a director that has just started waits for its
/// first edge list (one read of control; a viewer retries within a second or
/// two anyway).
const FIRST_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

/// A viewer token from the query (`v=`): 1..=32 hex digits, else none
/// (whether it is signed is the director's to check).
fn token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|p| p.strip_prefix("v="))
        .filter(|t| (1..=32).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
}

/// The pool (content-steering pathway) a request names (`p=`), if valid.
fn pool(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|p| p.strip_prefix("p="))
        .filter(|p| crate::rewrite::valid_pathway(p))
        .map(str::to_owned)
}

fn too_many() -> Response {
    let mut r = plain(
        StatusCode::TOO_MANY_REQUESTS,
        "too many new viewers from this address\n".into(),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

async fn hls(
    State(director): State<Director>,
    uri: Uri,
    peer: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
) -> Response {
    director.listed(FIRST_LIST_WAIT).await;
    let client = peer.map(|p| p.0.0.ip());
    // The viewer's signed token, or a new one (a new viewer, within its
    // address's allowance).
    let viewer_token = || match director.verified(token(uri.query()).as_deref()) {
        Some(t) => Some(t.to_owned()),
        None => director.new_viewer(client),
    };
    // The LL-HLS parameters (`_HLS_msn`, `_HLS_part`, `_HLS_skip`) are kept:
    // a blocking reload is passed on to the viewer's edge, which holds it.
    let key = match CacheKey::parse(uri.path(), uri.query()) {
        Ok(k) => k,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let path = format!("{}{}", hls::target::HLS_PREFIX, key.path());
    let ll_query = key.query().to_owned();
    let stream = key.stream().to_owned();
    let answer = if key.path().ends_with("master.m3u8") {
        let Some(token) = director.new_viewer(client) else {
            return too_many();
        };
        director.multivariant(&stream, &path, &token).await
    } else if key.path().ends_with(".m3u8") {
        let Some(token) = viewer_token() else {
            return too_many();
        };
        director
            .media(
                &stream,
                &path,
                &ll_query,
                &token,
                pool(uri.query()).as_deref(),
            )
            .await
    } else if key.path().ends_with("steering.json") {
        let Some(token) = viewer_token() else {
            return too_many();
        };
        return match director.steering(&token) {
            Ok(json) => (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                    (header::CACHE_CONTROL, "private, no-cache"),
                ],
                json,
            )
                .into_response(),
            Err(e) => error(&director, &e),
        };
    } else {
        return match director.redirect(&stream, &path) {
            Ok(to) => (
                StatusCode::FOUND,
                [
                    (header::LOCATION, to),
                    (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".into()),
                ],
            )
                .into_response(),
            Err(e) => error(&director, &e),
        };
    };
    match answer {
        Ok(served) => {
            let mut r = (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
                    (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                    // Per viewer: no shared cache may keep it.
                    (header::CACHE_CONTROL, "private, no-cache"),
                ],
                served.body.to_string(),
            )
                .into_response();
            if let Some(edge) = served.edge
                && let Ok(v) = HeaderValue::from_str(&edge)
            {
                r.headers_mut().insert("x-ferry-edge", v);
            }
            r
        }
        Err(e) => error(&director, &e),
    }
}

fn error(director: &Director, e: &DirectorError) -> Response {
    match e {
        DirectorError::NoEdge => {
            director.metrics().no_edge.inc();
            plain(StatusCode::SERVICE_UNAVAILABLE, "no live edges\n".into())
        }
        DirectorError::NotFound => plain(StatusCode::NOT_FOUND, "not found\n".into()),
        DirectorError::Fetch(_) => plain(StatusCode::BAD_GATEWAY, format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked() {
        assert_eq!(token(Some("v=00ff")).as_deref(), Some("00ff"));
        assert_eq!(token(Some("a=1&v=abc")).as_deref(), Some("abc"));
        assert_eq!(token(Some("v=../x")), None);
        assert_eq!(token(Some(&format!("v={}", "a".repeat(33)))), None);
        assert_eq!(token(None), None);
    }
}
