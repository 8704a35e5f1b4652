//! Tasks attached to streams, their types, and the lease routes workers
//! call (`/workers/{id}/...`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Control;
use control_client::types::TaskReport;

use super::caller::{Caller, bind};
use super::streams::*;
use super::{ApiError, ApiResult, Body, ErrorBody, body, check_name, parse_id};
use crate::db::TaskRow;

/// `POST /streams/{name}/tasks`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// A task type from `GET /task-types`.
    kind: String,
    /// Its config, as the type's schema says.
    #[schema(value_type = Object)]
    config: serde_json::Value,
    /// Run when the stream is live (default true).
    #[serde(default = "yes")]
    enabled: bool,
}

/// `PATCH /tasks/{id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    /// A new config (validated by the task type).
    #[schema(value_type = Option<Object>)]
    config: Option<serde_json::Value>,
    /// Enable or disable.
    enabled: Option<bool>,
}

/// A task type and the JSON Schema of its config.
#[derive(Serialize, ToSchema)]
pub struct TaskTypeView {
    /// Name.
    kind: String,
    /// What it does.
    description: String,
    /// JSON Schema of its config.
    #[schema(value_type = Object)]
    schema: serde_json::Value,
}

pub(super) fn task_view(c: &Control, mut t: TaskRow) -> TaskRow {
    if let Some(kind) = c.types.get(&t.kind) {
        t.config = kind.redact(&t.config);
    }
    t
}

/// Every task, with status.
#[utoipa::path(get, path = "/tasks", responses((status = 200, body = [TaskRow])))]
pub(super) async fn list_tasks(State(c): State<Arc<Control>>) -> ApiResult<Json<Vec<TaskRow>>> {
    Ok(Json(
        c.db.tasks(None)
            .await?
            .into_iter()
            .map(|t| task_view(&c, t))
            .collect(),
    ))
}

/// A stream's tasks.
#[utoipa::path(get, path = "/streams/{name}/tasks", params(("name" = String, Path)),
    responses((status = 200, body = [TaskRow]), (status = 404, body = ErrorBody)))]
pub(super) async fn stream_tasks(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<TaskRow>>> {
    Ok(Json(
        c.db.tasks(Some(&name))
            .await?
            .into_iter()
            .map(|t| task_view(&c, t))
            .collect(),
    ))
}

/// Attaches a task to a stream.
#[utoipa::path(post, path = "/streams/{name}/tasks", params(("name" = String, Path)), request_body = NewTask,
    responses((status = 201, body = TaskRow), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn create_task(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
    b: Body<NewTask>,
) -> ApiResult<(StatusCode, Json<TaskRow>)> {
    let new = body(b)?;
    let kind = c
        .types
        .get(&new.kind)
        .ok_or_else(|| ApiError::bad(format!("unknown task type {:?}", new.kind)))?;
    let config = kind
        .validate(&new.config)
        .map_err(|e| ApiError::bad(format!("invalid {} config: {e}", new.kind)))?;
    let row =
        c.db.create_task(&name, &new.kind, &config, new.enabled)
            .await?;
    Ok((StatusCode::CREATED, Json(task_view(&c, row))))
}

/// One task.
#[utoipa::path(get, path = "/tasks/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = TaskRow), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_task(
    State(c): State<Arc<Control>>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskRow>> {
    Ok(Json(task_view(&c, c.db.task(parse_id(&id)?).await?)))
}

/// Changes a task.
#[utoipa::path(patch, path = "/tasks/{id}", params(("id" = i64, Path)), request_body = TaskPatch,
    responses((status = 200, body = TaskRow), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn patch_task(
    State(c): State<Arc<Control>>,
    Path(id): Path<String>,
    b: Body<TaskPatch>,
) -> ApiResult<Json<TaskRow>> {
    let id = parse_id(&id)?;
    let patch = body(b)?;
    let task = c.db.task(id).await?;
    let config = match &patch.config {
        Some(cfg) => {
            let kind = c
                .types
                .get(&task.kind)
                .ok_or_else(|| ApiError::bad(format!("unknown task type {:?}", task.kind)))?;
            Some(
                kind.validate(cfg)
                    .map_err(|e| ApiError::bad(format!("invalid {} config: {e}", task.kind)))?,
            )
        }
        None => None,
    };
    Ok(Json(task_view(
        &c,
        c.db.update_task(id, config.as_ref(), patch.enabled).await?,
    )))
}

/// Deletes a task (its worker stops it within a second).
#[utoipa::path(delete, path = "/tasks/{id}", params(("id" = i64, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_task(
    State(c): State<Arc<Control>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    c.db.delete_task(parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Task types and their config schemas.
#[utoipa::path(get, path = "/task-types", responses((status = 200, body = [TaskTypeView])))]
pub(super) async fn task_types(State(c): State<Arc<Control>>) -> Json<Vec<TaskTypeView>> {
    Json(
        c.types
            .all()
            .map(|t| TaskTypeView {
                kind: t.kind().into(),
                description: t.description().into(),
                schema: t.schema(),
            })
            .collect(),
    )
}

pub(super) fn leases(c: &Control) -> crate::leases::LocalLeases {
    crate::leases::LocalLeases {
        db: c.db.clone(),
        local: c.local.clone(),
        nodes: c.nodes.clone(),
    }
}

pub(super) fn worker_id(id: &str) -> ApiResult<()> {
    check_name(id)
}

/// A worker leases the tasks of live streams nobody holds. The configs come
/// unmasked: the worker needs the secrets to run them.
#[utoipa::path(post, path = "/workers/{id}/claim", params(("id" = String, Path)),
    responses((status = 200, body = [TaskRow]), (status = 400, body = ErrorBody)))]
pub(super) async fn worker_claim(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<TaskRow>>> {
    worker_id(&id)?;
    bind(&c, &caller, &id).await?;
    let tasks = leases(&c).claim_now(&id).await.map_err(|e| {
        tracing::warn!(error = %e, "lease store failed");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "lease store error".into(),
        )
    })?;
    Ok(Json(tasks))
}

/// A worker renews its leases and reports status; the answer lists the tasks
/// it still holds and should keep running.
#[utoipa::path(post, path = "/workers/{id}/renew", params(("id" = String, Path)), request_body = [TaskReport],
    responses((status = 200, body = [i64]), (status = 400, body = ErrorBody)))]
pub(super) async fn worker_renew(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    b: Body<Vec<TaskReport>>,
) -> ApiResult<Json<Vec<i64>>> {
    worker_id(&id)?;
    bind(&c, &caller, &id).await?;
    let reports = body(b)?;
    let held = leases(&c).renew_now(&id, &reports).await.map_err(|e| {
        tracing::warn!(error = %e, "lease store failed");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "lease store error".into(),
        )
    })?;
    Ok(Json(held))
}

/// A worker gives leases back (it is stopping).
#[utoipa::path(post, path = "/workers/{id}/release", params(("id" = String, Path)), request_body = [i64],
    responses((status = 204), (status = 400, body = ErrorBody)))]
pub(super) async fn worker_release(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    b: Body<Vec<i64>>,
) -> ApiResult<StatusCode> {
    worker_id(&id)?;
    bind(&c, &caller, &id).await?;
    leases(&c).release_now(&id, &body(b)?).await;
    Ok(StatusCode::NO_CONTENT)
}
