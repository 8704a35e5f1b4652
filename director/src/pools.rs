//! The live edges by pool (content-steering pathway), built from control's
//! edge rows, and the edges to keep viewers off for a while because a
//! playlist fetch from them failed. Pure: no clock of its own, no I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use control_client::types::EdgeRow;

use crate::ring::{Member, Ring};

/// The live edges of one pool at one moment.
#[derive(Clone, Debug, Default)]
pub struct EdgeSet {
    /// Bumped on every change.
    pub version: u64,
    /// Live, non-draining edges.
    pub ring: Ring,
    /// Each ring member's URL, by index.
    pub urls: Vec<String>,
}

/// (pool, id, url, weight) of every live edge, sorted: what a change is.
type Signature = Vec<(String, String, String, u32)>;

/// The live edges by pool at one moment.
#[derive(Debug, Default)]
pub struct Pools {
    /// Bumped on every change.
    pub version: u64,
    signature: Signature,
    /// Each pool's edges.
    pub sets: BTreeMap<String, Arc<EdgeSet>>,
}

impl Pools {
    /// The pools of the live edges of `rows`, or `None` when they are the
    /// ones of `self` (same edges, URLs and weights): a ring is rebuilt, and
    /// cached rewrites dropped, only on a real change.
    pub fn changed(&self, rows: &[EdgeRow]) -> Option<Pools> {
        let mut signature: Signature = rows
            .iter()
            .filter(|r| r.state == "live")
            .map(|r| {
                (
                    r.load.pool.clone(),
                    r.id.clone(),
                    r.url.trim_end_matches('/').to_owned(),
                    r.load.capacity.max(1),
                )
            })
            .collect();
        signature.sort();
        if signature == self.signature {
            return None;
        }
        let version = self.version + 1;
        let mut sets = BTreeMap::new();
        for pool in signature.iter().map(|s| s.0.clone()) {
            if sets.contains_key(&pool) {
                continue;
            }
            let members: Vec<Member> = signature
                .iter()
                .filter(|s| s.0 == pool)
                .map(|(_, id, url, w)| Member {
                    id: id.clone(),
                    url: url.clone(),
                    weight: *w,
                })
                .collect();
            let urls = members.iter().map(|m| m.url.clone()).collect();
            let set = EdgeSet {
                version,
                ring: Ring::new(members),
                urls,
            };
            sets.insert(pool, Arc::new(set));
        }
        Some(Pools {
            version,
            signature,
            sets,
        })
    }

    /// Every live edge as (pool, id, url, weight), for the log.
    pub fn edges(&self) -> &[(String, String, String, u32)] {
        &self.signature
    }
}

/// Edges that failed a playlist fetch, kept off until a time: control
/// notices a dead edge only after a few missed beats.
#[derive(Debug, Default)]
pub struct Suspects(HashMap<String, Instant>);

impl Suspects {
    /// Keeps viewers off edge `id` until `until`.
    pub fn suspect(&mut self, id: &str, until: Instant) {
        self.0.insert(id.to_owned(), until);
    }

    /// `set` without the edges suspected at `now`; all of it when every
    /// edge is suspected (a guess beats no answer).
    pub fn usable(&mut self, set: &Arc<EdgeSet>, now: Instant) -> Arc<EdgeSet> {
        self.0.retain(|_, until| *until > now);
        let members = set.ring.members();
        if self.0.is_empty() || members.iter().all(|m| self.0.contains_key(&m.id)) {
            return set.clone();
        }
        let keep: Vec<usize> = (0..set.urls.len())
            .filter(|&i| !self.0.contains_key(&members[i].id))
            .collect();
        Arc::new(EdgeSet {
            version: set.version,
            ring: Ring::new(keep.iter().map(|&i| members[i].clone()).collect()),
            urls: keep.iter().map(|&i| set.urls[i].clone()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn row(id: &str, pool: &str, state: &str, capacity: u32) -> EdgeRow {
        EdgeRow {
            id: id.into(),
            url: format!("http://{id}/"),
            state: state.into(),
            load: control_client::types::EdgeLoad {
                pool: pool.into(),
                capacity,
                ..Default::default()
            },
            cpu: 0.0,
            last_heartbeat_ms: 0,
            viewers: 0,
        }
    }

    #[test]
    fn live_edges_make_one_ring_per_pool_and_only_a_change_makes_a_new_version() {
        let rows = [
            row("a", "p1", "live", 100),
            row("b", "p1", "live", 0),
            row("c", "p2", "live", 50),
            row("d", "p1", "dead", 100),
        ];
        let pools = Pools::default().changed(&rows).expect("new edges");
        assert_eq!(pools.version, 1);
        assert_eq!(pools.sets.len(), 2);
        let p1 = &pools.sets["p1"];
        assert_eq!(p1.urls, ["http://a", "http://b"], "trailing slash dropped");
        assert_eq!(p1.ring.members()[1].weight, 1, "no capacity counts as 1");
        assert!(pools.changed(&rows).is_none(), "same edges");
        let mut reordered = rows.clone();
        reordered.reverse();
        assert!(pools.changed(&reordered).is_none(), "order is no change");
        let fewer = pools.changed(&rows[1..]).expect("a left");
        assert_eq!(fewer.version, 2);
        assert_eq!(fewer.sets["p1"].urls, ["http://b"]);
    }

    #[test]
    fn suspected_edges_are_left_out_until_their_time_unless_all_are() {
        let pools = Pools::default()
            .changed(&[row("a", "", "live", 1), row("b", "", "live", 1)])
            .expect("edges");
        let set = pools.sets[""].clone();
        let mut s = Suspects::default();
        let now = Instant::now();
        s.suspect("a", now + Duration::from_secs(3));
        let usable = s.usable(&set, now);
        assert_eq!(usable.urls, ["http://b"]);
        assert_eq!(usable.version, set.version);
        s.suspect("b", now + Duration::from_secs(3));
        assert_eq!(s.usable(&set, now).urls.len(), 2, "all suspected: all kept");
        let later = now + Duration::from_secs(4);
        assert_eq!(s.usable(&set, later).urls.len(), 2);
        assert!(s.0.is_empty(), "expired suspicions are dropped");
    }
}
