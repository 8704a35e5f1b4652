//! A worker: takes the tasks of live streams under a lease, runs them
//! in-process, restarts failures with exponential backoff, reports status with
//! every lease renewal, and stops tasks whose stream ended or whose lease was
//! lost. `ferry serve` runs one; a worker that dies simply stops renewing, and
//! another takes its tasks once the lease expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::db::{Db, TaskStatus, now_ms};
use crate::tasks::{TaskContext, TaskTypes};

/// How long a lease lasts without renewal; a dead worker's tasks move after this.
pub const LEASE: Duration = Duration::from_secs(6);
/// How often leases are renewed and new tasks looked for.
pub const TICK: Duration = Duration::from_secs(1);
/// Backoff after a failure: doubles from this ...
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// ... up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Tasks one worker takes at most.
pub const MAX_TASKS: usize = 64;

/// A task running on this worker.
struct Running {
    cancel: CancellationToken,
    status: Arc<Mutex<TaskStatus>>,
}

/// Runs tasks for streams of `hub` until `cancel`.
pub async fn run(
    id: String,
    db: Arc<Db>,
    hub: media_core::Hub,
    types: TaskTypes,
    cancel: CancellationToken,
) {
    let mut running: HashMap<i64, Running> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    let mut published = hub.published();
    info!(worker = %id, "worker started");
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
            // A stream going live is served at once, not at the next tick.
            _ = published.recv() => {}
        }
        let live: Vec<String> = hub
            .live_streams()
            .into_iter()
            .filter(|n| !n.contains('/'))
            .collect();
        let lease_until = now_ms() + LEASE.as_millis() as i64;
        // Renew what runs; stop what lost its lease or its reason to run.
        let mut stop = Vec::new();
        for (task_id, r) in &running {
            let status = r.status.lock().map(|s| s.clone()).unwrap_or_default();
            let still = db
                .task(*task_id)
                .is_ok_and(|t| t.enabled && live.contains(&t.stream));
            match db.renew_task(*task_id, &id, lease_until, &status) {
                Ok(true) if still => {}
                Ok(_) => stop.push(*task_id),
                Err(e) => warn!(error = %e, "lease renewal failed"),
            }
        }
        for task_id in stop {
            if let Some(r) = running.remove(&task_id) {
                r.cancel.cancel();
                let _ = db.release_task(task_id, &id);
            }
        }
        // Take new ones.
        let claimed = match db.claim_tasks(&id, &live, lease_until, MAX_TASKS) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot claim tasks");
                continue;
            }
        };
        for task in claimed {
            if running.contains_key(&task.id) {
                continue;
            }
            let Some(kind) = types.get(&task.kind).cloned() else {
                warn!(task = task.id, kind = %task.kind, "unknown task type");
                continue;
            };
            let r = Running {
                cancel: cancel.child_token(),
                status: Arc::new(Mutex::new(TaskStatus {
                    state: "running".into(),
                    last_error: None,
                    restarts: task.restarts,
                })),
            };
            let ctx = TaskContext {
                hub: hub.clone(),
                stream: task.stream.clone(),
                cancel: r.cancel.clone(),
            };
            let status = r.status.clone();
            info!(task = task.id, kind = %task.kind, stream = %task.stream, worker = %id, "task started");
            tokio::spawn(supervise(kind, ctx, task.config.clone(), status));
            running.insert(task.id, r);
        }
    }
    for (task_id, r) in running {
        r.cancel.cancel();
        let _ = db.release_task(task_id, &id);
    }
}

/// Runs a task again after each failure, waiting longer each time, until it
/// ends by itself or is cancelled.
async fn supervise(
    kind: Arc<dyn crate::tasks::TaskType>,
    ctx: TaskContext,
    config: serde_json::Value,
    status: Arc<Mutex<TaskStatus>>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = tokio::time::Instant::now();
        let result = kind.run(ctx.clone(), config.clone()).await;
        if ctx.cancel.is_cancelled() {
            return;
        }
        let why = match result {
            // The stream ended: wait for it to come back (same live session of
            // the lease) or for the worker to stop the task.
            Ok(()) => {
                while !ctx.hub.is_live(&ctx.stream) {
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
                continue;
            }
            Err(e) => e,
        };
        warn!(stream = %ctx.stream, kind = kind.kind(), error = %why, "task failed; restarting");
        if let Ok(mut s) = status.lock() {
            s.state = "failed".into();
            s.last_error = Some(why);
            s.restarts += 1;
        }
        // A run that lasted a while resets the backoff.
        if started.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_MIN;
        }
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        if let Ok(mut s) = status.lock() {
            s.state = "running".into();
        }
    }
}
