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
    url: String,
    seen: Instant,
    /// After a move: the edge URL of segments before this sequence number.
    moved: Option<(String, u64)>,
    /// The newest media sequence number this viewer has been given.
    last_msn: Option<u64>,
}

/// Where a viewer goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    /// Index into the ring.
    pub index: usize,
    /// The URL of the edge it was on, when it was just moved from one, and
    /// the newest sequence number the viewer had been given there.
    pub moved_from: Option<(String, Option<u64>)>,
}

/// Shards of the viewer table: a map that grows rehashes a 64th of it at
/// a time (one map of a million viewers stalled every request behind it for
/// tens of milliseconds while it grew).
const SHARDS: usize = 64;

/// The viewer table.
pub struct Assignments {
    viewers: Vec<HashMap<String, Viewer>>,
    count: u64,
    load: HashMap<String, u64>,
    next: usize,
    policy: Policy,
    epsilon: f64,
    floor: u64,
}

impl Assignments {
    /// An empty table; every edge may take `floor` viewers whatever the
    /// total (with a handful of viewers the (1 + ε) bound would scatter a
    /// stream's first viewers over every edge, and they would stay there).
    pub fn new(policy: Policy, epsilon: f64, floor: u64) -> Self {
        Self {
            viewers: (0..SHARDS).map(|_| HashMap::new()).collect(),
            count: 0,
            load: HashMap::new(),
            next: 0,
            policy,
            epsilon,
            floor,
        }
    }

    fn shard(&self, viewer: &str) -> usize {
        (hash(viewer) % SHARDS as u64) as usize
    }

    fn get(&self, viewer: &str) -> Option<&Viewer> {
        self.viewers[self.shard(viewer)].get(viewer)
    }

    fn get_mut(&mut self, viewer: &str) -> Option<&mut Viewer> {
        let i = self.shard(viewer);
        self.viewers[i].get_mut(viewer)
    }

    /// Edge `i`'s bound with `total` viewers placed.
    fn bound(&self, ring: &Ring, i: usize, total: u64) -> u64 {
        ring.bound(i, total, self.epsilon).max(self.floor)
    }

    /// Viewers counted now.
    pub fn total(&self) -> u64 {
        self.count
    }

    /// Viewers on edge `id`.
    pub fn load(&self, id: &str) -> u64 {
        self.load.get(id).copied().unwrap_or(0)
    }

    fn remove(&mut self, viewer: &str) {
        let i = self.shard(viewer);
        if let Some(v) = self.viewers[i].remove(viewer) {
            self.count = self.count.saturating_sub(1);
            if let Some(n) = self.load.get_mut(&v.edge) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// The edge `viewer` keeps: its current one while that is on the ring
    /// and within its bound.
    fn kept(&self, viewer: &str, stream: &str, ring: &Ring) -> Option<usize> {
        let v = self.get(viewer).filter(|v| v.stream == stream)?;
        let i = ring.members().iter().position(|m| m.id == v.edge)?;
        let within = match self.policy {
            Policy::BoundedLoad => self.load(&v.edge) <= self.bound(ring, i, self.total()),
            Policy::RoundRobin => true,
        };
        within.then_some(i)
    }

    /// Where `viewer` watching `stream` would go, without placing it: the
    /// edge to fetch its playlist from before it counts anywhere (a request
    /// that fails, or names no stream, places no viewer).
    pub fn propose(&self, viewer: &str, stream: &str, ring: &Ring) -> Option<usize> {
        if ring.is_empty() {
            return None;
        }
        if let Some(i) = self.kept(viewer, stream, ring) {
            return Some(i);
        }
        match self.policy {
            Policy::BoundedLoad => {
                let loads: Vec<u64> = ring.members().iter().map(|m| self.load(&m.id)).collect();
                let total = self.total() + 1;
                ring.choose(hash(stream), |i| loads[i], |i| self.bound(ring, i, total))
            }
            Policy::RoundRobin => Some(self.next.wrapping_add(1) % ring.members().len()),
        }
    }

    /// Whether `viewer` is in the table.
    pub fn knows(&self, viewer: &str) -> bool {
        self.get(viewer).is_some()
    }

    /// The edge (index into `ring`) for `viewer` watching `stream`, keeping
    /// its current edge while that one is on the ring and within its bound.
    pub fn assign(
        &mut self,
        viewer: &str,
        stream: &str,
        ring: &Ring,
        now: Instant,
    ) -> Option<Assigned> {
        if ring.is_empty() {
            return None;
        }
        if let Some(i) = self.kept(viewer, stream, ring) {
            if let Some(v) = self.get_mut(viewer) {
                v.seen = now;
            }
            return Some(Assigned {
                index: i,
                moved_from: None,
            });
        }
        let moved_from = self
            .get(viewer)
            .filter(|v| v.stream == stream)
            .map(|v| (v.url.clone(), v.last_msn));
        self.remove(viewer);
        let i = match self.policy {
            Policy::BoundedLoad => {
                let loads: Vec<u64> = ring.members().iter().map(|m| self.load(&m.id)).collect();
                let total = self.total() + 1;
                ring.choose(hash(stream), |i| loads[i], |i| self.bound(ring, i, total))?
            }
            Policy::RoundRobin => {
                self.next = self.next.wrapping_add(1);
                self.next % ring.members().len()
            }
        };
        let edge = ring.members()[i].id.clone();
        *self.load.entry(edge.clone()).or_default() += 1;
        self.count += 1;
        let shard = self.shard(viewer);
        self.viewers[shard].insert(
            viewer.to_owned(),
            Viewer {
                stream: stream.to_owned(),
                edge,
                url: ring.members()[i].url.clone(),
                seen: now,
                moved: None,
                last_msn: None,
            },
        );
        Some(Assigned {
            index: i,
            moved_from,
        })
    }

    /// Records that `viewer`'s segments before `from_msn` stay on `old_url`.
    pub fn set_moved(&mut self, viewer: &str, old_url: String, from_msn: u64) {
        if let Some(v) = self.get_mut(viewer) {
            v.moved = Some((old_url, from_msn));
        }
    }

    /// Records the newest sequence number `viewer` has been given.
    pub fn given(&mut self, viewer: &str, last_msn: u64) {
        if let Some(v) = self.get_mut(viewer) {
            v.last_msn = Some(last_msn);
        }
    }

    /// The old edge URL and first new sequence number of a recent move, until
    /// the playlist starting at `first_msn` no longer lists old segments.
    pub fn moved(&mut self, viewer: &str, first_msn: u64) -> Option<(String, u64)> {
        let v = self.get_mut(viewer)?;
        if v.moved.as_ref().is_some_and(|(_, from)| first_msn >= *from) {
            v.moved = None;
        }
        v.moved.clone()
    }

    /// Forgets viewers not seen for `timeout` (one pass over the table).
    pub fn expire(&mut self, now: Instant, timeout: Duration) {
        let load = &mut self.load;
        let mut count = 0;
        for shard in &mut self.viewers {
            shard.retain(|_, v| {
                let keep = now.duration_since(v.seen) <= timeout;
                if !keep && let Some(n) = load.get_mut(&v.edge) {
                    *n = n.saturating_sub(1);
                }
                keep
            });
            count += shard.len() as u64;
        }
        self.count = count;
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
                    url: format!("http://{id}"),
                    weight: 1,
                })
                .collect(),
        )
    }

    #[test]
    fn viewers_keep_their_edge_and_move_only_when_it_goes() {
        let now = Instant::now();
        let r3 = ring(&["a", "b", "c"]);
        let mut t = Assignments::new(Policy::BoundedLoad, 0.25, 1);
        let mut first = HashMap::new();
        for v in 0..90 {
            let s = format!("s{}", v % 3);
            first.insert(
                v,
                t.assign(&format!("v{v}"), &s, &r3, now)
                    .expect("edge")
                    .index,
            );
        }
        for v in 0..90 {
            let s = format!("s{}", v % 3);
            assert_eq!(
                t.assign(&format!("v{v}"), &s, &r3, now),
                Some(Assigned {
                    index: first[&v],
                    moved_from: None
                }),
                "viewer {v} moved"
            );
        }
        // Edge "b" leaves: only its viewers move.
        let r2 = ring(&["a", "c"]);
        for v in 0..90 {
            let s = format!("s{}", v % 3);
            let a = t.assign(&format!("v{v}"), &s, &r2, now).expect("edge");
            let now_on = &r2.members()[a.index].id;
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
        let mut t = Assignments::new(Policy::RoundRobin, 0.25, 1);
        let mut edges = std::collections::HashSet::new();
        for v in 0..6 {
            edges.insert(t.assign(&format!("v{v}"), "one", &r, now).map(|a| a.index));
        }
        assert_eq!(edges.len(), 3);
    }
}
