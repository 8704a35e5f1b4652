//! Operator and node tokens.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Control;

use super::{ApiResult, Body, ErrorBody, body, parse_id};

/// `POST /tokens`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// `admin`, or the one kind of node the token acts as: `origin`,
    /// `edge`, `worker`, `director` (`node`: an origin or a worker, as
    /// before kinds existed).
    role: crate::db::TokenRole,
}

/// A new token, shown in full only in this response.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    /// Id (to delete it).
    id: i64,
    /// The token.
    token: String,
}

/// Tokens (hints only).
#[utoipa::path(get, path = "/tokens", responses((status = 200, body = [crate::db::TokenRow])))]
pub(super) async fn list_tokens(
    State(c): State<Arc<Control>>,
) -> ApiResult<Json<Vec<crate::db::TokenRow>>> {
    Ok(Json(c.db.tokens().await?))
}

/// Makes a token (shown once): a node token acts as one node of its kind.
#[utoipa::path(post, path = "/tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody)))]
pub(super) async fn create_token(
    State(c): State<Arc<Control>>,
    b: Body<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let new = body(b)?;
    let token = crate::secret::generate();
    let id = c.db.add_token_with_role(&token, new.role).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { id, token })))
}

/// Deletes a token (not the last admin token).
#[utoipa::path(delete, path = "/tokens/{id}", params(("id" = i64, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn delete_token(
    State(c): State<Arc<Control>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    c.db.delete_token(parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
