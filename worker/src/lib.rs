//! The task runtime: takes the tasks of live streams under a lease, runs them
//! in-process, restarts failures with exponential backoff, reports status with
//! every lease renewal, and stops tasks whose stream ended or whose lease was
//! lost. `ferry serve` runs one; a worker that dies simply stops renewing, and
//! another takes its tasks once the lease expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use control_client::Leases;
use control_client::types::{TaskReport, TaskStatus};

pub mod tasks;

pub use tasks::{Media, TaskContext, TaskType, TaskTypes};

pub use control_client::leases::{LEASE, MAX_TASKS};
/// How often leases are renewed and new tasks looked for.
pub const TICK: Duration = Duration::from_secs(1);
/// Backoff after a failure: doubles from this ...
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// ... up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A task running on this worker.
struct Running {
    cancel: CancellationToken,
    status: Arc<Mutex<TaskStatus>>,
}

/// Runs tasks until `cancel`: every [`TICK`], renews what runs (stopping what
/// it no longer holds) and claims what is new. `published`, if given, wakes it
/// as soon as a stream goes live.
pub async fn run(
    id: String,
    leases: Arc<dyn Leases>,
    media: Media,
    types: TaskTypes,
    cancel: CancellationToken,
) {
    let mut running: HashMap<i64, Running> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    let mut last_renewed = tokio::time::Instant::now();
    let mut published = match &media {
        Media::Hub(hub) => Some(hub.published()),
        Media::Origin { .. } => None,
    };
    info!(worker = %id, "worker started");
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
            // A stream going live is served at once, not at the next tick.
            _ = async { published.as_mut()?.recv().await.ok() }, if published.is_some() => {}
        }
        let reports: Vec<TaskReport> = running
            .iter()
            .map(|(task_id, r)| TaskReport {
                id: *task_id,
                status: r.status.lock().map(|s| s.clone()).unwrap_or_default(),
            })
            .collect();
        if !reports.is_empty() {
            match leases.renew(&id, reports).await {
                Ok(held) => {
                    last_renewed = tokio::time::Instant::now();
                    running.retain(|task_id, r| {
                    let keep = held.contains(task_id);
                    if !keep {
                        info!(task = task_id, worker = %id, "task stopped (stream ended, disabled or lease lost)");
                        r.cancel.cancel();
                    }
                    keep
                    })
                }
                // Keep running while the lease may still be valid; past it,
                // another worker may have taken the tasks, so stop them all
                // rather than run a task twice (a partitioned worker).
                Err(e) if last_renewed.elapsed() < LEASE => {
                    warn!(error = %e, "lease renewal failed");
                }
                Err(e) => {
                    warn!(error = %e, "leases expired without renewal; stopping every task");
                    for r in running.values() {
                        r.cancel.cancel();
                    }
                    running.clear();
                }
            }
        }
        let claimed = match leases.claim(&id).await {
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
                media: media.clone(),
                stream: task.stream.clone(),
                cancel: r.cancel.clone(),
            };
            let status = r.status.clone();
            info!(task = task.id, kind = %task.kind, stream = %task.stream, worker = %id, "task started");
            tokio::spawn(supervise(kind, ctx, task.config.clone(), status));
            running.insert(task.id, r);
        }
    }
    let ids: Vec<i64> = running.keys().copied().collect();
    for r in running.into_values() {
        r.cancel.cancel();
    }
    let _ = leases.release(&id, ids).await;
}

/// Runs a task again after each failure, waiting longer each time, until it
/// ends by itself or is cancelled.
async fn supervise(
    kind: Arc<dyn TaskType>,
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
                match &ctx.media {
                    Media::Hub(hub) => {
                        while !hub.is_live(&ctx.stream) {
                            tokio::select! {
                                _ = ctx.cancel.cancelled() => return,
                                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                            }
                        }
                    }
                    // Playing from an origin waits for the stream by itself.
                    Media::Origin { .. } => {
                        tokio::select! {
                            _ = ctx.cancel.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_millis(200)) => {}
                        }
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
