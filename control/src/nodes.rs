//! The node registry: which nodes exist (in the database: registrations,
//! written when a node is new or its role, address or version change) and
//! which are alive (in memory: every heartbeat, no database write per beat).
//! Several control processes share liveness through [`Nodes::sync`]: once a
//! second each stores the beats it received in one batch and reads the
//! others', so a beat reaching any of them counts everywhere within about a
//! second. Nodes gone for longer than the prune time are forgotten.

use std::sync::Mutex;
use std::time::Duration;

use dashmap::DashMap;

use crate::db::{Db, DbError, NodeRow, now_ms};
use control_client::types::{Audience, IngestReport};

/// How recent a heartbeat must be for a node (and an origin's streams) to
/// count as alive.
pub const NODE_FRESH_MS: i64 = 10_000;
/// Nodes silent for this long are removed, by default.
pub const DEFAULT_NODE_PRUNE: Duration = Duration::from_secs(24 * 3600);
/// Pruning runs at most this often.
const PRUNE_EVERY_MS: i64 = 10_000;
/// An edge silent for this long is dead (no viewer is sent to it), by default.
pub const DEFAULT_EDGE_DEAD: Duration = Duration::from_secs(3);

/// Nodes, their registration and their liveness.
pub struct Nodes {
    live: DashMap<String, NodeRow>,
    prune_after_ms: i64,
    last_prune_ms: Mutex<i64>,
    edge_dead_ms: i64,
    /// Edges an operator (or the autoscaler) marked draining: stored, and
    /// mirrored here by [`Nodes::sync`].
    drained: DashMap<String, ()>,
    /// Nodes that beat here since the last [`Nodes::sync`].
    fresh: dashmap::DashSet<String>,
    /// Drain marks made in memory ([`Nodes::mark_draining`]) that the next
    /// [`Nodes::sync`] stores.
    drain_writes: Mutex<Vec<(String, bool)>>,
    /// The newest beat time read back by [`Nodes::sync`] (0: none yet).
    read_up_to_ms: Mutex<i64>,
    /// Edges forgotten at once ([`Nodes::forget_edge`]), with their last
    /// beat's time: the stored copy of that beat must not bring them back.
    forgotten: DashMap<String, i64>,
}

/// How far back [`Nodes::sync`] reads beats other control processes stored,
/// past the newest it has seen: their batches land up to a second apart.
const SYNC_OVERLAP_MS: i64 = 5_000;

impl Nodes {
    /// A registry that forgets nodes silent for `prune_after`.
    pub fn new(prune_after: Duration) -> Self {
        Self {
            live: DashMap::new(),
            prune_after_ms: i64::try_from(prune_after.as_millis()).unwrap_or(i64::MAX),
            last_prune_ms: Mutex::new(0),
            edge_dead_ms: i64::try_from(DEFAULT_EDGE_DEAD.as_millis()).unwrap_or(i64::MAX),
            drained: DashMap::new(),
            fresh: dashmap::DashSet::new(),
            drain_writes: Mutex::new(Vec::new()),
            read_up_to_ms: Mutex::new(0),
            forgotten: DashMap::new(),
        }
    }

    /// Edges silent for `dead` count as dead.
    pub fn with_edge_dead(mut self, dead: Duration) -> Self {
        self.edge_dead_ms = i64::try_from(dead.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Marks edge `id` draining (or not), stored so that it holds on every
    /// control process and across restarts; false if no such edge has beaten.
    pub async fn set_draining(&self, db: &Db, id: &str, draining: bool) -> Result<bool, DbError> {
        let known = self.is_edge(id);
        if known {
            db.set_drain(id, draining).await?;
            self.drain_here(id, draining);
        }
        Ok(known)
    }

    /// Marks edge `id` draining (or not) here at once, stored with the next
    /// [`Nodes::sync`] (for callers that cannot wait on the database, such as
    /// the autoscaler's plan); false if no such edge has beaten.
    pub fn mark_draining(&self, id: &str, draining: bool) -> bool {
        let known = self.is_edge(id);
        if known {
            self.drain_here(id, draining);
            self.drain_writes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((id.to_owned(), draining));
        }
        known
    }

    fn is_edge(&self, id: &str) -> bool {
        self.live.get(id).is_some_and(|n| n.role == "edge")
    }

    fn drain_here(&self, id: &str, draining: bool) {
        if draining {
            self.drained.insert(id.to_owned(), ());
        } else {
            self.drained.remove(id);
        }
    }

    /// Shares liveness with the other control processes on the same
    /// database: stores the beats received here since the last call, reads
    /// those stored by the others (a newer beat replaces an older one), and
    /// the drains. Called about once a second.
    pub async fn sync(&self, db: &Db) -> Result<(), DbError> {
        let writes =
            std::mem::take(&mut *self.drain_writes.lock().unwrap_or_else(|e| e.into_inner()));
        for (i, (id, draining)) in writes.iter().enumerate() {
            if let Err(e) = db.set_drain(id, *draining).await {
                // Kept for the next call, in order.
                let mut queue = self.drain_writes.lock().unwrap_or_else(|e| e.into_inner());
                let rest: Vec<_> = writes[i..].to_vec();
                queue.splice(0..0, rest);
                return Err(e);
            }
        }
        let ids: Vec<String> = self.fresh.iter().map(|id| id.clone()).collect();
        let beats: Vec<NodeRow> = ids
            .iter()
            .filter_map(|id| {
                self.fresh.remove(id);
                self.live.get(id).map(|n| n.clone())
            })
            .collect();
        if let Err(e) = db.store_beats(&beats).await {
            // Stored with the next call instead.
            for b in &beats {
                self.fresh.insert(b.id.clone());
            }
            return Err(e);
        }
        let since = {
            let last = *self.read_up_to_ms.lock().unwrap_or_else(|e| e.into_inner());
            if last == 0 {
                now_ms().saturating_sub(self.prune_after_ms)
            } else {
                last - SYNC_OVERLAP_MS
            }
        };
        let mut newest = since;
        for beat in db.beats_since(since).await? {
            newest = newest.max(beat.last_heartbeat_ms);
            // A forgotten edge comes back only with a beat sent since.
            let gone = self
                .forgotten
                .get(&beat.id)
                .is_some_and(|at| *at >= beat.last_heartbeat_ms);
            if gone {
                continue;
            }
            let newer = self
                .live
                .get(&beat.id)
                .is_none_or(|n| n.last_heartbeat_ms < beat.last_heartbeat_ms);
            if newer {
                self.live.insert(beat.id.clone(), beat);
            }
        }
        *self.read_up_to_ms.lock().unwrap_or_else(|e| e.into_inner()) =
            newest.max(now_ms() - SYNC_OVERLAP_MS);
        let drains = db.drains().await?;
        self.drained.retain(|id, _| drains.contains(id));
        for id in drains {
            self.drained.insert(id, ());
        }
        Ok(())
    }

    /// Directors reporting now.
    pub fn directors_alive(&self) -> usize {
        let now = now_ms();
        self.live
            .iter()
            .filter(|n| n.role == "director" && now - n.last_heartbeat_ms <= NODE_FRESH_MS)
            .count()
    }

    /// Viewers per edge id, summed over the directors alive now.
    pub fn viewers_per_edge(&self) -> std::collections::BTreeMap<String, u64> {
        let now = now_ms();
        let mut sum = std::collections::BTreeMap::new();
        for n in self.live.iter() {
            if n.role != "director" || now - n.last_heartbeat_ms > NODE_FRESH_MS {
                continue;
            }
            for (edge, v) in &n.viewers {
                *sum.entry(edge.clone()).or_insert(0u64) += v;
            }
        }
        sum
    }

    /// Every stream's audience, summed over the nodes alive now (HLS viewers
    /// from directors, RTMP players from origins and edges).
    pub fn audience(&self) -> std::collections::BTreeMap<String, Audience> {
        let now = now_ms();
        let mut sum = std::collections::BTreeMap::<String, Audience>::new();
        for n in self.live.iter() {
            if now - n.last_heartbeat_ms > NODE_FRESH_MS {
                continue;
            }
            for (stream, a) in &n.audience {
                sum.entry(stream.clone()).or_default().add(a);
            }
        }
        sum
    }

    /// Each live stream's ingest as an origin alive now reports it, with
    /// that origin's id; of redundant origins, always the same one (the
    /// smallest id), so rates are differences of one origin's counters.
    pub fn ingest(&self) -> std::collections::BTreeMap<String, (String, IngestReport)> {
        let now = now_ms();
        let mut out = std::collections::BTreeMap::<String, (String, IngestReport)>::new();
        for n in self.live.iter() {
            if now - n.last_heartbeat_ms > NODE_FRESH_MS {
                continue;
            }
            for (stream, report) in &n.ingest {
                let take = out.get(stream).is_none_or(|(id, _)| n.id < *id);
                if take {
                    out.insert(stream.clone(), (n.id.clone(), report.clone()));
                }
            }
        }
        out
    }

    /// Forgets edge `id` at once (the autoscaler stopped it): directors drop
    /// it at their next poll instead of after its heartbeats run out.
    pub fn forget_edge(&self, id: &str) {
        self.mark_draining(id, false);
        if let Some((_, n)) = self.live.remove_if(id, |_, n| n.role == "edge") {
            self.forgotten.insert(id.to_owned(), n.last_heartbeat_ms);
        }
    }

    /// Every edge that has beaten since this process started, with its state
    /// (`live`, `draining`, `dead`), last load and viewers.
    pub fn edges(&self) -> Vec<control_client::types::EdgeRow> {
        let now = now_ms();
        let viewers = self.viewers_per_edge();
        let mut edges: Vec<_> = self
            .live
            .iter()
            .filter(|n| n.role == "edge")
            .map(|n| {
                let load = n.edge.clone().unwrap_or_default();
                let state = if now - n.last_heartbeat_ms > self.edge_dead_ms {
                    "dead"
                } else if load.draining || self.drained.contains_key(&n.id) {
                    "draining"
                } else {
                    "live"
                };
                control_client::types::EdgeRow {
                    id: n.id.clone(),
                    url: n.address.clone(),
                    state: state.into(),
                    load,
                    cpu: n.load,
                    last_heartbeat_ms: n.last_heartbeat_ms,
                    viewers: viewers.get(&n.id).copied().unwrap_or(0),
                }
            })
            .collect();
        edges.sort_by(|a, b| a.id.cmp(&b.id));
        edges
    }

    /// Records a heartbeat: in memory always, in the database only when the
    /// node's registration is new or changed.
    pub async fn beat(&self, db: &Db, mut node: NodeRow) -> Result<(), DbError> {
        node.last_heartbeat_ms = now_ms();
        let changed = self.live.get(&node.id).is_none_or(|old| {
            old.role != node.role || old.address != node.address || old.version != node.version
        });
        if changed {
            db.heartbeat(&node).await?;
        }
        self.fresh.insert(node.id.clone());
        self.forgotten.remove(&node.id);
        self.live.insert(node.id.clone(), node);
        Ok(())
    }

    /// The relay certificate fingerprints of the nodes alive now: what
    /// edges pin.
    pub fn relay_pins(&self) -> Vec<String> {
        let now = now_ms();
        let mut pins: Vec<String> = self
            .live
            .iter()
            .filter(|n| now - n.last_heartbeat_ms <= NODE_FRESH_MS)
            .filter_map(|n| n.relay.as_ref().map(|r| r.fingerprint.clone()))
            .collect();
        pins.sort();
        pins.dedup();
        pins
    }

    /// The origins alive now that advertise a URL (`http://` or
    /// `https://`), by id: what an edge with no configured origins uses.
    pub fn origins(&self) -> Vec<control_client::types::OriginRow> {
        let now = now_ms();
        let mut origins: Vec<_> = self
            .live
            .iter()
            .filter(|n| matches!(n.role.as_str(), "origin" | "all"))
            .filter(|n| now - n.last_heartbeat_ms <= NODE_FRESH_MS)
            .filter(|n| n.address.starts_with("http://") || n.address.starts_with("https://"))
            .map(|n| control_client::types::OriginRow {
                id: n.id.clone(),
                url: n.address.clone(),
                streams: n.streams.clone(),
                relay: n.relay.clone(),
            })
            .collect();
        origins.sort_by(|a, b| a.id.cmp(&b.id));
        origins
    }

    /// Whether `id` sent a heartbeat within [`NODE_FRESH_MS`].
    pub fn alive(&self, id: &str) -> bool {
        self.live
            .get(id)
            .is_some_and(|n| now_ms() - n.last_heartbeat_ms <= NODE_FRESH_MS)
    }

    /// Every registered node, with its latest heartbeat, load and streams
    /// (from memory where it has beaten since this process started).
    pub async fn list(&self, db: &Db) -> Result<Vec<NodeRow>, DbError> {
        let mut nodes: Vec<NodeRow> = db
            .nodes()
            .await?
            .into_iter()
            .map(|stored| match self.live.get(&stored.id) {
                Some(live) => live.clone(),
                None => stored,
            })
            .collect();
        nodes.sort_by_key(|n| std::cmp::Reverse(n.last_heartbeat_ms));
        Ok(nodes)
    }

    /// Streams live on alive nodes apart from the all-in-one one (whose
    /// streams are in control's own hub), with the node each is on.
    pub fn live_streams(&self) -> Vec<(String, String)> {
        let now = now_ms();
        self.live
            .iter()
            // The all-in-one node's streams are in control's own hub.
            .filter(|n| n.role != "all" && now - n.last_heartbeat_ms <= NODE_FRESH_MS)
            .flat_map(|n| {
                let id = n.id.clone();
                n.streams
                    .iter()
                    .map(|s| (s.clone(), id.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Removes nodes silent for longer than the prune time (at most every
    /// few seconds): from memory in every control process, from the
    /// database by the `leader` (it must run once).
    pub async fn prune(&self, db: &Db, leader: bool) {
        let now = now_ms();
        {
            let mut last = self.last_prune_ms.lock().unwrap_or_else(|e| e.into_inner());
            if now - *last < PRUNE_EVERY_MS {
                return;
            }
            *last = now;
        }
        let cutoff = now.saturating_sub(self.prune_after_ms);
        self.live.retain(|_, n| n.last_heartbeat_ms >= cutoff);
        // Past the sync's reach, a forgotten beat cannot come back.
        self.forgotten
            .retain(|_, at| *at >= now - 2 * SYNC_OVERLAP_MS - NODE_FRESH_MS);
        if !leader {
            return;
        }
        let live: Vec<String> = self.live.iter().map(|n| n.id.clone()).collect();
        if let Err(e) = db.prune_nodes(cutoff, &live).await {
            tracing::warn!(error = %e, "pruning nodes failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, streams: &[&str]) -> NodeRow {
        NodeRow {
            id: id.into(),
            role: "origin".into(),
            address: "10.0.0.1:8080".into(),
            version: "1".into(),
            last_heartbeat_ms: 0,
            load: 0.5,
            streams: streams.iter().map(|s| (*s).to_owned()).collect(),
            edge: None,
            relay: None,
            viewers: Default::default(),
            audience: Default::default(),
            ingest: Default::default(),
        }
    }

    #[tokio::test]
    async fn beats_live_in_memory_and_registrations_in_the_database() {
        let db = Db::memory().expect("db");
        let nodes = Nodes::new(DEFAULT_NODE_PRUNE);
        nodes.beat(&db, node("o1", &["a"])).await.expect("beat");
        let stored = db.nodes().await.expect("nodes")[0].last_heartbeat_ms;
        std::thread::sleep(Duration::from_millis(5));
        nodes
            .beat(&db, node("o1", &["a", "b"]))
            .await
            .expect("beat");
        // Same registration: the database row was not written again.
        assert_eq!(
            db.nodes().await.expect("nodes")[0].last_heartbeat_ms,
            stored
        );
        let listed = nodes.list(&db).await.expect("list");
        assert_eq!(listed.len(), 1);
        assert!(listed[0].last_heartbeat_ms > stored, "liveness from memory");
        assert_eq!(listed[0].streams, ["a", "b"]);
        assert!(nodes.alive("o1"));
        assert!(!nodes.alive("o2"));
        let mut live = nodes.live_streams();
        live.sort();
        assert_eq!(live, [("a".into(), "o1".into()), ("b".into(), "o1".into())]);
    }

    #[tokio::test]
    async fn silent_nodes_are_pruned() {
        let db = Db::memory().expect("db");
        let nodes = Nodes::new(Duration::from_millis(1));
        nodes.beat(&db, node("gone", &[])).await.expect("beat");
        std::thread::sleep(Duration::from_millis(20));
        *nodes.last_prune_ms.lock().expect("lock") = 0;
        nodes.beat(&db, node("here", &[])).await.expect("beat");
        nodes.prune(&db, true).await;
        let ids: Vec<String> = nodes
            .list(&db)
            .await
            .expect("list")
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, ["here"]);
        assert!(!nodes.alive("gone"));
    }

    #[tokio::test]
    async fn liveness_and_drains_reach_another_control_process_through_the_database() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.db");
        let (db_a, db_b) = (Db::open(&path).expect("db"), Db::open(&path).expect("db"));
        let (a, b) = (
            Nodes::new(DEFAULT_NODE_PRUNE),
            Nodes::new(DEFAULT_NODE_PRUNE),
        );
        let mut edge = node("e1", &[]);
        edge.role = "edge".into();
        a.beat(&db_a, edge).await.expect("beat");
        a.beat(&db_a, node("o1", &["s"])).await.expect("beat");
        assert!(!b.alive("e1"));
        a.sync(&db_a).await.expect("sync a");
        b.sync(&db_b).await.expect("sync b");
        assert!(b.alive("e1") && b.alive("o1"));
        assert_eq!(b.live_streams(), [("s".into(), "o1".into())]);
        // A drain set through one is seen by the other.
        assert!(b.set_draining(&db_b, "e1", true).await.expect("drain"));
        a.sync(&db_a).await.expect("sync a");
        assert_eq!(a.edges()[0].state, "draining");
        assert!(b.set_draining(&db_b, "e1", false).await.expect("undrain"));
        a.sync(&db_a).await.expect("sync a");
        assert_eq!(a.edges()[0].state, "live");
    }

    #[tokio::test]
    async fn a_forgotten_edge_is_not_brought_back_by_its_stored_beat() {
        let db = Db::memory().expect("db");
        let nodes = Nodes::new(DEFAULT_NODE_PRUNE);
        let mut edge = node("e1", &[]);
        edge.role = "edge".into();
        nodes.beat(&db, edge.clone()).await.expect("beat");
        nodes.sync(&db).await.expect("sync");
        nodes.forget_edge("e1");
        nodes.sync(&db).await.expect("sync");
        assert!(nodes.edges().is_empty(), "the stored beat brought it back");
        // A beat sent after it was forgotten (restarted on the same id) counts.
        std::thread::sleep(Duration::from_millis(5));
        nodes.beat(&db, edge).await.expect("beat");
        nodes.sync(&db).await.expect("sync");
        assert_eq!(nodes.edges().len(), 1);
    }
}
