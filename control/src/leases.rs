//! Leases straight from the database, for the worker inside `ferry serve` and
//! for the API's worker routes: which tasks may run is decided by what is live
//! here and on other origins.

use std::sync::Arc;

use control_client::leases::{LEASE, LeaseError, LeaseFuture, Leases, MAX_TASKS};
use control_client::types::{TaskReport, TaskRow};

use crate::db::{Db, now_ms};

/// Leases straight from the database, with liveness from this process's
/// streams and the origins' heartbeats.
pub struct LocalLeases {
    /// The state.
    pub db: Arc<Db>,
    /// What is live here.
    pub local: Arc<dyn crate::ingest::LocalStreams>,
    /// What is live on other origins.
    pub nodes: Arc<crate::Nodes>,
}

impl LocalLeases {
    /// Live here, or on an origin whose heartbeat is fresh.
    fn live(&self) -> Vec<String> {
        let mut live = self.local.live_sources();
        live.extend(self.nodes.live_streams().into_iter().map(|(s, _)| s));
        live.sort();
        live.dedup();
        live
    }

    /// [`Leases::claim`].
    pub async fn claim_now(&self, worker: &str) -> Result<Vec<TaskRow>, LeaseError> {
        self.db
            .claim_tasks(worker, &self.live(), lease_until(), MAX_TASKS)
            .await
            .map_err(|e| LeaseError::Store(e.to_string()))
    }

    /// [`Leases::renew`].
    pub async fn renew_now(
        &self,
        worker: &str,
        running: &[TaskReport],
    ) -> Result<Vec<i64>, LeaseError> {
        let live = self.live();
        let mut held = Vec::new();
        for r in running {
            let wanted = self
                .db
                .task(r.id)
                .await
                .is_ok_and(|t| t.enabled && live.contains(&t.stream));
            let renewed = self
                .db
                .renew_task(r.id, worker, lease_until(), &r.status)
                .await
                .map_err(|e| LeaseError::Store(e.to_string()))?;
            if renewed && wanted {
                held.push(r.id);
            } else if renewed {
                let _ = self.db.release_task(r.id, worker).await;
            }
        }
        Ok(held)
    }

    /// [`Leases::release`].
    pub async fn release_now(&self, worker: &str, ids: &[i64]) {
        for id in ids {
            let _ = self.db.release_task(*id, worker).await;
        }
    }
}

fn lease_until() -> i64 {
    now_ms() + LEASE.as_millis() as i64
}

impl Leases for LocalLeases {
    fn claim<'a>(&'a self, worker: &'a str) -> LeaseFuture<'a, Vec<TaskRow>> {
        Box::pin(self.claim_now(worker))
    }
    fn renew<'a>(&'a self, worker: &'a str, running: Vec<TaskReport>) -> LeaseFuture<'a, Vec<i64>> {
        Box::pin(async move { self.renew_now(worker, &running).await })
    }
    fn release<'a>(&'a self, worker: &'a str, ids: Vec<i64>) -> LeaseFuture<'a, ()> {
        Box::pin(async move {
            self.release_now(worker, &ids).await;
            Ok(())
        })
    }
}
