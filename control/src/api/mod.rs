//! The REST API under `/api/v1`, with its OpenAPI document at
//! `/api/v1/openapi.json`. Every route but the document needs
//! `Authorization: Bearer TOKEN`; errors are JSON `{"error": "..."}` that say
//! what is wrong.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::middleware::{self};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::Control;

use crate::db::DbError;

/// An API error: a status and a sentence.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

/// The error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong.
    pub error: String,
}

impl ApiError {
    fn bad(msg: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound(_) => Self(StatusCode::NOT_FOUND, e.to_string()),
            DbError::Exists(_) => Self(StatusCode::CONFLICT, e.to_string()),
            DbError::Sqlite(_) | DbError::Postgres(_) | DbError::Column(_) => {
                tracing::warn!(error = %e, "api database error");
                Self(StatusCode::INTERNAL_SERVER_ERROR, "database error".into())
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY_BYTES} bytes"),
            );
        }
        Self::bad(format!("invalid JSON body: {}", e.body_text()))
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The longest address or version a heartbeat may carry.
pub const MAX_HEARTBEAT_TEXT: usize = 256;
/// The most live streams one heartbeat may report.
pub const MAX_HEARTBEAT_STREAMS: usize = 1000;
/// Variants, rungs or consumer kinds one stream's report may name.
pub const MAX_HEARTBEAT_VARIANTS: usize = 32;
/// Edges a director may report viewers for in one heartbeat.
pub const MAX_HEARTBEAT_EDGES: usize = 10_000;
/// The largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 256 << 10;
type Body<T> = Result<Json<T>, JsonRejection>;

pub(super) fn body<T>(b: Body<T>) -> ApiResult<T> {
    b.map(|Json(v)| v).map_err(ApiError::from)
}

/// Stream and task names become paths and hub names: the rule the config
/// file uses too ([`media_core::path::valid_name`]).
pub(super) fn check_name(name: &str) -> ApiResult<()> {
    if media_core::path::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "name must be {}",
            media_core::path::NAME_RULE
        )))
    }
}

pub(super) fn parse_id(raw: &str) -> ApiResult<i64> {
    raw.parse()
        .map_err(|_| ApiError::bad(format!("{raw:?} is not a numeric id")))
}

mod caller;
mod nodes;
mod publish;
mod streams;
mod tasks;
mod tokens;
mod warnings;

use caller::require_token;
use nodes::*;
use publish::*;
use streams::*;
pub use streams::{
    CreatedStream, LiveStatus, NewKey, NewStream, RungStatus, StreamPatch, StreamView,
};
use tasks::*;
pub use tasks::{NewTask, TaskPatch, TaskTypeView};
use tokens::*;
pub use tokens::{CreatedToken, NewToken};
pub use warnings::StreamWarning;

/// The JSON Schema of per-stream settings (for forms).
#[utoipa::path(get, path = "/stream-settings", responses((status = 200, body = Object)))]
async fn stream_settings(State(c): State<Arc<Control>>) -> Json<serde_json::Value> {
    Json(c.settings.schema.clone())
}

/// Where encoders publish.
#[utoipa::path(get, path = "/server", responses((status = 200, body = crate::ServerInfo)))]
async fn server_info(State(c): State<Arc<Control>>) -> Json<crate::ServerInfo> {
    Json(c.server.clone())
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Ferry control API", description = "Streams, publish keys, tasks and nodes of a Ferry cluster."),
    servers((url = "/api/v1")),
    paths(list_streams, create_stream, get_stream, patch_stream, delete_stream, add_key, revoke_key, rotate_key,
          kick, live, stream_history, node_history, list_tasks, stream_tasks, create_task, get_task, patch_task, delete_task, task_types,
          nodes, heartbeat, edges, origins, relay_pins, relay_verify, drain_edge, undrain_edge, autoscale_status, server_info, worker_claim, worker_renew, worker_release, auth_publish, stream_settings, list_tokens, create_token, delete_token),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such API route".into())
}

/// The API router, to nest under `/api/v1`.
pub fn router(control: Arc<Control>) -> Router {
    let protected = Router::new()
        .route("/streams", get(list_streams).post(create_stream))
        .route(
            "/streams/{name}",
            get(get_stream).patch(patch_stream).delete(delete_stream),
        )
        .route("/streams/{name}/keys", post(add_key))
        .route(
            "/streams/{name}/keys/{id}",
            axum::routing::delete(revoke_key),
        )
        .route("/streams/{name}/keys/{id}/rotate", post(rotate_key))
        .route("/streams/{name}/kick", post(kick))
        .route("/streams/{name}/tasks", get(stream_tasks).post(create_task))
        .route("/live", get(live))
        .route("/history/streams/{name}", get(stream_history))
        .route("/history/nodes/{id}", get(node_history))
        .route("/tasks", get(list_tasks))
        .route(
            "/tasks/{id}",
            get(get_task).patch(patch_task).delete(delete_task),
        )
        .route("/task-types", get(task_types))
        .route("/nodes", get(nodes))
        .route("/edges", get(edges))
        .route("/relay/pins", get(relay_pins))
        .route("/origins", get(origins))
        .route("/relay/verify", post(relay_verify))
        .route("/edges/{id}/drain", post(drain_edge))
        .route("/edges/{id}/undrain", post(undrain_edge))
        .route("/autoscale", get(autoscale_status))
        .route("/server", get(server_info))
        .route("/auth/publish", post(auth_publish))
        .route("/stream-settings", get(stream_settings))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", axum::routing::delete(delete_token))
        .route("/workers/{id}/claim", post(worker_claim))
        .route("/workers/{id}/renew", post(worker_renew))
        .route("/workers/{id}/release", post(worker_release))
        .route("/nodes/heartbeat", post(heartbeat))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(
            control.clone(),
            require_token,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(control);
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .merge(protected)
}
