//! The contract between a worker and whoever hands out task leases: the
//! database directly (a worker inside `ferry serve`) or the control API over
//! HTTP (`ferry worker`).

use std::time::Duration;

use crate::types::{TaskReport, TaskRow};

/// How long a lease lasts without renewal; a dead worker's tasks move after
/// this. Both sides of the contract read it: the worker renews well within it,
/// the lease store hands a task on after it.
pub const LEASE: Duration = Duration::from_secs(6);
/// Tasks one worker takes at most.
pub const MAX_TASKS: usize = 64;

/// Why a lease call failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The control plane could not be reached or refused.
    #[error(transparent)]
    Client(#[from] crate::ClientError),
    /// The database behind the leases failed.
    #[error("lease store: {0}")]
    Store(String),
}

/// A boxed future, for the [`Leases`] trait.
pub type LeaseFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, LeaseError>> + Send + 'a>>;

/// Where a worker gets its tasks.
pub trait Leases: Send + Sync {
    /// Leases the tasks of live streams that nobody holds.
    fn claim<'a>(&'a self, worker: &'a str) -> LeaseFuture<'a, Vec<TaskRow>>;
    /// Renews the leases of the tasks this worker runs, reporting their status;
    /// returns the ids it still holds and should keep running.
    fn renew<'a>(&'a self, worker: &'a str, running: Vec<TaskReport>) -> LeaseFuture<'a, Vec<i64>>;
    /// Gives leases back.
    fn release<'a>(&'a self, worker: &'a str, ids: Vec<i64>) -> LeaseFuture<'a, ()>;
}
