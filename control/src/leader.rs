//! Which control process leads: the one holding the `control` lease row.
//! The leader runs what must run once (pruning, the autoscaler); every
//! process answers the API. With one process (SQLite) it always leads.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use crate::db::{Db, DbError};

/// How long a lease lasts without renewal: a leader that dies is replaced
/// within this (plus one sync period).
pub const LEASE_TTL: Duration = Duration::from_secs(5);

/// The lease's name in the `leader` table.
const LEASE: &str = "control";

/// This process's standing.
#[derive(Debug)]
pub struct Leader {
    id: String,
    leading: AtomicBool,
    term: AtomicI64,
}

impl Leader {
    /// A process named `id` (unique per process: host, port, start time),
    /// not leading until its first [`Leader::renew`].
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            leading: AtomicBool::new(false),
            term: AtomicI64::new(0),
        }
    }

    /// This process's id in the lease.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether this process leads now.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// The term this process leads in (0: never led).
    pub fn term(&self) -> i64 {
        self.term.load(Ordering::Acquire)
    }

    /// Takes or keeps the lease; on a database error this process stops
    /// leading (another may take over when the lease runs out).
    pub async fn renew(&self, db: &Db) -> Result<bool, DbError> {
        let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
        let standing = match db.lead(LEASE, &self.id, ttl).await {
            Ok(s) => s,
            Err(e) => {
                self.set(false, self.term());
                return Err(e);
            }
        };
        self.set(standing.leader, standing.term);
        Ok(standing.leader)
    }

    /// Gives the lease up on a clean shutdown.
    pub async fn resign(&self, db: &Db) {
        if self.is_leader() {
            self.set(false, self.term());
            if let Err(e) = db.resign(LEASE, &self.id).await {
                tracing::warn!(error = %e, "cannot give the control lease up");
            }
        }
    }

    fn set(&self, leading: bool, term: i64) {
        let was = self.leading.swap(leading, Ordering::AcqRel);
        if leading {
            self.term.store(term, Ordering::Release);
        }
        if was != leading {
            tracing::info!(id = %self.id, leading, term, "control leadership changed");
        }
    }
}
