//! `POST /auth/publish`: an origin asks whether a key may publish.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::Control;
use control_client::types::{DenyReason, PublishCheck, PublishDenied, PublishGrant};

use super::caller::Caller;
use super::{ApiError, ApiResult, Body, ErrorBody, body};

/// An origin asks whether a key may publish (origins that run apart from the
/// control plane; they cache the answer for a few seconds).
#[utoipa::path(post, path = "/auth/publish", request_body = PublishCheck,
    responses((status = 200, body = PublishGrant), (status = 403, body = PublishDenied), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(super) async fn auth_publish(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    b: Body<PublishCheck>,
) -> ApiResult<Response> {
    use control_client::KeyLookup;
    if !c.auth_checks.allow(&caller.0) {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "more than {} publish checks in {} s from this token",
                crate::AUTH_CHECKS_PER_WINDOW,
                crate::AUTH_CHECK_WINDOW.as_secs()
            ),
        ));
    }
    let check = body(b)?;
    match c.keys.lookup(&check.key).await {
        Ok(Ok(stream)) => {
            let settings = c.keys.settings(&stream);
            Ok(Json(PublishGrant { stream, settings }).into_response())
        }
        Ok(Err(why)) => {
            let reason = match why {
                media_core::auth::AuthError::Disabled => DenyReason::Disabled,
                _ => DenyReason::UnknownKey,
            };
            let denied = PublishDenied {
                error: why.to_string(),
                reason,
            };
            Ok((StatusCode::FORBIDDEN, Json(denied)).into_response())
        }
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}
