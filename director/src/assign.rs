//! Which edge each viewer uses: sticky while its edge is live and within its
//! bound, chosen on the ring (or round robin, for comparison) otherwise.
//! Loads are the director's own count of viewers seen recently per edge.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ring::{Ring, hash};

/// How viewers are spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Consistent hashing with bounded loads, keyed by stream.
    BoundedLoad,
    /// Each new viewer to the next edge in turn (every edge then fetches
    /// every stream: the baseline the bounded-load policy is measured against).
    RoundRobin,
}

struct Viewer {
    stream: String,
    edge: String,
    seen: Instant,
}

/// The viewer table.
pub struct Assignments {
    viewers: HashMap<String, Viewer>,
    load: HashMap<String, u64>,
    next: usize,
    policy: Policy,
    epsilon: f64,
}

impl Assignments {
    /// An empty table.
    pub fn new(policy: Policy, epsilon: f64) -> Self {
        Self {
            viewers: HashMap::new(),
            load: HashMap::new(),
            next: 0,
            policy,
            epsilon,
        }
    }

    /// Viewers counted now.
    pub fn total(&self) -> u64 {
        self.viewers.len() as u64
    }

    /// Viewers on edge `id`.
    pub fn load(&self, id: &str) -> u64 {
        self.load.get(id).copied().unwrap_or(0)
    }

    fn remove(&mut self, viewer: &str) {
        if let Some(v) = self.viewers.remove(viewer)
            && let Some(n) = self.load.get_mut(&v.edge)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// The edge (index into `ring`) for `viewer` watching `stream`, keeping
    /// its current edge while that one is on the ring and within its bound.
    pub fn assign(
        &mut self,
        viewer: &str,
        stream: &str,
        ring: &Ring,
        now: Instant,
    ) -> Option<usize> {
        if ring.is_empty() {
            return None;
        }
        let position = |id: &str| ring.members().iter().position(|m| m.id == id);
        if let Some(v) = self.viewers.get(viewer)
            && v.stream == stream
            && let Some(i) = position(&v.edge)
        {
            let within = match self.policy {
                Policy::BoundedLoad => {
                    self.load(&v.edge) <= ring.bound(i, self.total(), self.epsilon)
                }
                Policy::RoundRobin => true,
            };
            if within {
                if let Some(v) = self.viewers.get_mut(viewer) {
                    v.seen = now;
                }
                return Some(i);
            }
        }
        self.remove(viewer);
        let i = match self.policy {
            Policy::BoundedLoad => {
                let loads: Vec<u64> = ring.members().iter().map(|m| self.load(&m.id)).collect();
                ring.choose(hash(stream), |i| loads[i], self.total(), self.epsilon)?
            }
            Policy::RoundRobin => {
                self.next = self.next.wrapping_add(1);
                self.next % ring.members().len()
            }
        };
        let edge = ring.members()[i].id.clone();
        *self.load.entry(edge.clone()).or_default() += 1;
        self.viewers.insert(
            viewer.to_owned(),
            Viewer {
                stream: stream.to_owned(),
                edge,
                seen: now,
            },
        );
        Some(i)
    }

    /// Forgets viewers not seen for `timeout`.
    pub fn expire(&mut self, now: Instant, timeout: Duration) {
        let old: Vec<String> = self
            .viewers
            .iter()
            .filter(|(_, v)| now.duration_since(v.seen) > timeout)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.remove(&k);
        }
    }

    /// Viewers per edge id.
    pub fn loads(&self) -> impl Iterator<Item = (&String, &u64)> {
        self.load.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Member;

    fn ring(ids: &[&str]) -> Ring {
        Ring::new(
            ids.iter()
                .map(|id| Member {
                    id: (*id).into(),
                    weight: 1,
                })
                .collect(),
        )
    }

    #[test]
    fn viewers_keep_their_edge_and_move_only_when_it_goes() {
        let now = Instant::now();
        let r3 = ring(&["a", "b", "c"]);
        let mut t = Assignments::new(Policy::BoundedLoad, 0.25);
        let mut first = HashMap::new();
        for v in 0..90 {
            let s = format!("s{}", v % 3);
            first.insert(v, t.assign(&format!("v{v}"), &s, &r3, now).expect("edge"));
        }
        for v in 0..90 {
            let s = format!("s{}", v % 3);
            assert_eq!(
                t.assign(&format!("v{v}"), &s, &r3, now),
                Some(first[&v]),
                "viewer {v} moved"
            );
        }
        // Edge "b" leaves: only its viewers move.
        let r2 = ring(&["a", "c"]);
        for v in 0..90 {
            let s = format!("s{}", v % 3);
            let now_on = &r2.members()[t.assign(&format!("v{v}"), &s, &r2, now).expect("edge")].id;
            let was = &r3.members()[first[&v]].id;
            if was != "b" {
                // Staying put unless over the (now higher) bound.
                assert!(
                    now_on == was || t.load(was) as f64 > 1.25 * 45.0,
                    "viewer {v} moved from {was}"
                );
            }
        }
        assert_eq!(t.load("b"), 0);
        t.expire(now + Duration::from_secs(60), Duration::from_secs(10));
        assert_eq!(t.total(), 0);
    }

    #[test]
    fn round_robin_puts_every_stream_everywhere() {
        let now = Instant::now();
        let r = ring(&["a", "b", "c"]);
        let mut t = Assignments::new(Policy::RoundRobin, 0.25);
        let mut edges = std::collections::HashSet::new();
        for v in 0..6 {
            edges.insert(t.assign(&format!("v{v}"), "one", &r, now));
        }
        assert_eq!(edges.len(), 3);
    }
}
