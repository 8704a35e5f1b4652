//! Who calls: the bearer-token check every route but the document passes,
//! and a node token bound to one node.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Control;

use super::{ApiError, ApiResult};

/// The bearer token of the request, for handlers that bind it to a node.
#[derive(Clone)]
pub(super) struct Caller(pub(super) String);

/// What the bearer token of the request may do.
#[derive(Clone, Copy)]
pub(super) struct CallerRole(pub(super) crate::db::TokenRole);

/// A node token acts as one node: refuses `id` if the token belongs to
/// another node that is alive.
pub(super) async fn bind(c: &Control, caller: &Caller, id: &str) -> ApiResult<()> {
    match c
        .db
        .bind_node(&caller.0, id, |other| c.nodes.alive(other))
        .await?
    {
        Ok(()) => Ok(()),
        Err(crate::db::BoundElsewhere(why)) => Err(ApiError(StatusCode::FORBIDDEN, why)),
    }
}

pub(super) async fn require_token(
    State(c): State<Arc<Control>>,
    req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let caller = token.map(|t| Caller(t.to_owned()));
    let role = match token {
        Some(t) => Some(c.db.token_role(t).await),
        None => None,
    };
    match role {
        Some(Ok(Some(role))) if role.may_call(req.uri().path()) => {
            let mut req = req;
            if let Some(caller) = caller {
                req.extensions_mut().insert(CallerRole(role));
                req.extensions_mut().insert(caller);
            }
            next.run(req).await
        }
        Some(Ok(Some(role))) => ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "this is a {} token; it cannot call this route (use an admin token)",
                serde_json::to_value(role)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        )
        .into_response(),
        Some(Err(e)) => ApiError::from(e).into_response(),
        _ => {
            let mut r = ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token".into(),
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}
