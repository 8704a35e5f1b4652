//! Tasks attached to streams, and the leases workers hold on them. A lease
//! is taken with a conditional update (the row changes only if nobody holds
//! it), so workers claiming through different control processes at once
//! cannot both get one task.

use control_client::types::{TaskRow, TaskStatus};

use super::{Db, DbError, Row, args, now_ms, now_s};

const TASK_COLUMNS: &str = "SELECT t.id, s.name, t.kind, t.config, t.enabled, t.state, t.last_error, t.restarts, t.worker, t.lease_until_ms
     FROM tasks t JOIN streams s ON s.id = t.stream_id";

fn task_row(r: &Row) -> Result<TaskRow, DbError> {
    Ok(TaskRow {
        id: r.int(0)?,
        stream: r.text(1)?,
        kind: r.text(2)?,
        config: serde_json::from_str(&r.text(3)?).unwrap_or(serde_json::Value::Null),
        enabled: r.bool(4)?,
        state: r.text(5)?,
        last_error: r.opt_text(6)?,
        restarts: r.int(7)?,
        worker: r.opt_text(8)?,
        lease_until_ms: r.int(9)?,
    })
}

impl Db {
    /// Tasks, of one stream or all.
    pub async fn tasks(&self, stream: Option<&str>) -> Result<Vec<TaskRow>, DbError> {
        if let Some(s) = stream {
            self.stream(s).await?;
        }
        self.query(
            &format!(
                "{TASK_COLUMNS} WHERE CAST(?1 AS TEXT) IS NULL OR s.name = CAST(?1 AS TEXT) ORDER BY t.id"
            ),
            args![stream],
        )
        .await?
        .iter()
        .map(task_row)
        .collect()
    }

    /// One task.
    pub async fn task(&self, id: i64) -> Result<TaskRow, DbError> {
        let row = self
            .query_opt(&format!("{TASK_COLUMNS} WHERE t.id = ?1"), args![id])
            .await?
            .ok_or_else(|| DbError::NotFound(format!("task {id}")))?;
        task_row(&row)
    }

    /// Adds a task to a stream.
    pub async fn create_task(
        &self,
        stream: &str,
        kind: &str,
        config: &serde_json::Value,
        enabled: bool,
    ) -> Result<TaskRow, DbError> {
        let sid = self.stream(stream).await?.id;
        let id = self
            .query_opt(
                "INSERT INTO tasks (stream_id, kind, config, enabled, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5) RETURNING id",
                args![sid, kind, config.to_string(), enabled, now_s()],
            )
            .await?
            .ok_or_else(|| DbError::NotFound("the task just created".into()))?
            .int(0)?;
        self.task(id).await
    }

    /// Changes a task's config and/or enabled flag.
    pub async fn update_task(
        &self,
        id: i64,
        config: Option<&serde_json::Value>,
        enabled: Option<bool>,
    ) -> Result<TaskRow, DbError> {
        let n = self
            .exec(
                "UPDATE tasks SET config = COALESCE(?2, config), enabled = COALESCE(?3, enabled), updated_at = ?4 WHERE id = ?1",
                args![id, config.map(|c| c.to_string()), enabled, now_s()],
            )
            .await?;
        if n == 0 {
            return Err(DbError::NotFound(format!("task {id}")));
        }
        self.task(id).await
    }

    /// Deletes a task.
    pub async fn delete_task(&self, id: i64) -> Result<(), DbError> {
        let n = self
            .exec("DELETE FROM tasks WHERE id = ?1", args![id])
            .await?;
        if n == 0 {
            return Err(DbError::NotFound(format!("task {id}")));
        }
        Ok(())
    }

    /// Takes the enabled tasks of `live` streams that no worker holds a valid
    /// lease on (or that `worker` holds already), leasing them to `worker`
    /// until `lease_until_ms`. At most `max` tasks.
    pub async fn claim_tasks(
        &self,
        worker: &str,
        live: &[String],
        lease_until_ms: i64,
        max: usize,
    ) -> Result<Vec<TaskRow>, DbError> {
        let now = now_ms();
        let candidates = self
            .query(
                "SELECT t.id, s.name FROM tasks t JOIN streams s ON s.id = t.stream_id
                 WHERE t.enabled AND s.enabled AND (t.lease_until_ms < ?1 OR t.worker = ?2)
                 ORDER BY t.id",
                args![now, worker],
            )
            .await?;
        let mut claimed = Vec::new();
        for c in candidates {
            if claimed.len() >= max {
                break;
            }
            let (id, stream) = (c.int(0)?, c.text(1)?);
            if !live.contains(&stream) {
                continue;
            }
            // Taken only if still free (or ours) when the row is written.
            let took = self
                .exec(
                    "UPDATE tasks SET worker = ?2, lease_until_ms = ?3
                     WHERE id = ?1 AND (lease_until_ms < ?4 OR worker = ?2)",
                    args![id, worker, lease_until_ms, now],
                )
                .await?;
            if took > 0 {
                claimed.push(self.task(id).await?);
            }
        }
        Ok(claimed)
    }

    /// Extends `worker`'s lease on a task and records its status; `false` if
    /// the worker no longer holds the lease (another took the task over).
    pub async fn renew_task(
        &self,
        id: i64,
        worker: &str,
        lease_until_ms: i64,
        status: &TaskStatus,
    ) -> Result<bool, DbError> {
        let n = self
            .exec(
                "UPDATE tasks SET lease_until_ms = ?3, state = ?4,
                   last_error = COALESCE(?5, last_error), restarts = ?6, updated_at = ?7
                 WHERE id = ?1 AND worker = ?2",
                args![
                    id,
                    worker,
                    lease_until_ms,
                    status.state.as_str(),
                    status.last_error.clone(),
                    status.restarts,
                    now_s()
                ],
            )
            .await?;
        Ok(n > 0)
    }

    /// Gives a task's lease back (its stream stopped, or it was disabled).
    pub async fn release_task(&self, id: i64, worker: &str) -> Result<(), DbError> {
        self.exec(
            "UPDATE tasks SET worker = NULL, lease_until_ms = 0, state = 'idle' WHERE id = ?1 AND worker = ?2",
            args![id, worker],
        )
        .await?;
        Ok(())
    }
}
