//! Which edge each viewer uses: chosen on the ring (or round robin, for
//! comparison), then sticky.
//!
//! The bound of bounded-load hashing is `(1 + ε)` times an edge's share of
//! the viewers placed *so far*: in a burst of arrivals it starts tiny, and the
//! first viewers of a big stream spill over every edge before the audience is
//! all there. So a viewer is only *settling* for its first `settle` period:
//! on each reload it moves towards the front of its stream's ring walk when
//! an edge there has room under the bound as it is now (consolidation: each
//! move goes strictly forward, so it ends). A *settled* viewer stays on its
//! edge unless that edge left the ring (dead or draining) or is over its
//! bound by more than another ε (so departures that shrink the bound a little
//! reshuffle nobody). Loads are the director's own count of viewers seen
//! recently per edge, or, with the farm's load given ([`Assignments::set_farm`]),
//! the larger of that and what the edges report, so that several directors
//! behind one load balancer bound the same loads.

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
    /// When it was first placed: it settles `settle` later.
    placed: Instant,
    /// The edges this viewer's segments were given on, from the oldest a
    /// playlist may still list: see [`Given`].
    given: Given,
    /// The variant (`source`, a rung) whose media playlist it follows.
    variant: Option<String>,
}

/// The edge each of a viewer's segments was given on, by media sequence
/// number. A segment's URI must never change for a viewer: players such as
/// hls.js take a changed URI for a sequence number they have seen as a broken
/// playlist (a fatal "media sequence mismatch"). So a viewer that moves,
/// however often, keeps every URI it was given, and gets its new edge only
/// for segments it has not seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Given {
    /// `(first sequence number, edge URL)`, oldest first; each run lasts
    /// until the next one starts, the last until `last`.
    runs: Vec<(u64, String)>,
    /// The newest sequence number given.
    last: Option<u64>,
}

impl Given {
    /// The newest sequence number given, if any.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// The edge URL segment `msn` was given on, if it was given.
    pub fn url_of(&self, msn: u64) -> Option<&str> {
        if self.last.is_none_or(|l| msn > l) {
            return None;
        }
        self.runs
            .iter()
            .rev()
            .find(|(from, _)| *from <= msn)
            .map(|(_, url)| url.as_str())
    }

    /// Whether `msn` comes before every segment remembered.
    pub fn before_all(&self, msn: u64) -> bool {
        self.runs.first().is_some_and(|(from, _)| msn < *from)
    }

    /// Whether every segment given is on `url` (or none was given).
    pub fn all_on(&self, url: &str) -> bool {
        self.runs.iter().all(|(_, u)| u == url)
    }

    /// Records a playlist listing `first_msn..=last_msn` as given, the
    /// segments not given before on `url`.
    pub fn give(&mut self, first_msn: u64, last_msn: u64, url: &str) {
        let from = self.last.map_or(first_msn, |l| l + 1);
        if self.last.is_some_and(|l| last_msn <= l) {
            return;
        }
        if self.runs.last().is_none_or(|(_, u)| u != url) {
            self.runs.push((from, url.to_owned()));
        }
        self.last = Some(last_msn);
    }

    /// Drops runs that end before `first_msn` (no playlist lists them now).
    pub fn forget_before(&mut self, first_msn: u64) {
        let still = self
            .runs
            .iter()
            .rposition(|(from, _)| *from <= first_msn)
            .unwrap_or(0);
        self.runs.drain(..still);
    }
}

/// Where a viewer goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    /// Index into the ring.
    pub index: usize,
    /// Why it is there.
    pub reason: Reason,
}

/// Why a viewer is on its edge: what the director's metrics count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// It stays where it was.
    Kept,
    /// A new viewer, on its stream's home edge.
    Home,
    /// A new viewer, past edges at their bound (or floor).
    Spilled,
    /// A settling viewer moved forward on its stream's walk (room appeared).
    Consolidated,
    /// Its edge left the ring (dead, draining or suspected).
    EdgeGone,
    /// Its edge was over its bound by more than ε.
    Overloaded,
    /// Its edge held more viewers than its capacity and another had room.
    OverCapacity,
}

impl Reason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Kept => "kept",
            Reason::Home => "home",
            Reason::Spilled => "spilled",
            Reason::Consolidated => "consolidated",
            Reason::EdgeGone => "edge_gone",
            Reason::Overloaded => "overloaded",
            Reason::OverCapacity => "over_capacity",
        }
    }
}

/// What [`Assignments::propose`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proposal {
    /// The viewer stays where it is (already counted there).
    Kept(Assigned),
    /// Fetch from this edge, then place the viewer.
    Try(usize),
}

/// What a viewer's current placement calls for.
enum Verdict {
    Stay(usize),
    MoveTo(usize, Reason),
    Place(Reason),
}

/// Where streams sit, for operators (`GET /director/placement`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PlacementReport {
    /// Viewers counted (at least what the farm reports).
    pub total: u64,
    /// Each edge's viewers and bound now.
    pub edges: Vec<EdgeReport>,
    /// Each stream's viewers per edge, and the packing's plan.
    pub streams: std::collections::BTreeMap<String, Vec<StreamOnEdge>>,
    /// Each stream's viewers per variant they follow.
    pub variants: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
}

/// One edge in a [`PlacementReport`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct EdgeReport {
    /// Node id.
    pub id: String,
    /// Viewers on it (at least what it reports).
    pub viewers: u64,
    /// How many it may take: (1 + ε) × its share, at least the floor.
    pub bound: u64,
}

/// One stream on one edge in a [`PlacementReport`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct StreamOnEdge {
    /// Edge node id.
    pub edge: String,
    /// Its viewers there.
    pub viewers: u64,
    /// What the packing gives it there (settling viewers move to match).
    pub planned: u64,
}

/// Viewers by stream, then edge id (looked up without allocating).
type Nested = HashMap<String, HashMap<String, u64>>;

fn nested_get(m: &Nested, stream: &str, edge: &str) -> u64 {
    m.get(stream)
        .and_then(|e| e.get(edge))
        .copied()
        .unwrap_or(0)
}

/// Takes one from `m[outer][inner]`, dropping entries that reach zero.
fn nested_sub(m: &mut Nested, outer: &str, inner: &str) {
    if let Some(inners) = m.get_mut(outer) {
        if let Some(n) = inners.get_mut(inner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inners.remove(inner);
            }
        }
        if inners.is_empty() {
            m.remove(outer);
        }
    }
}

fn nested_add(m: &mut Nested, stream: &str, edge: &str, n: u64) {
    *m.entry(stream.to_owned())
        .or_default()
        .entry(edge.to_owned())
        .or_default() += n;
}

/// How often the packing is made again (and whenever the edges change).
pub const PLAN_EVERY: Duration = Duration::from_millis(250);

/// Shards of the viewer table: a map that grows rehashes a 64th of it at
/// a time (one map of a million viewers stalled every request behind it for
/// tens of milliseconds while it grew).
const SHARDS: usize = 64;

/// The viewer table.
pub struct Assignments {
    viewers: Vec<HashMap<String, Viewer>>,
    count: u64,
    load: HashMap<String, u64>,
    /// Viewers per (stream, edge): where each stream sits.
    placement: Nested,
    /// Viewers per (stream, variant): which rungs people watch.
    variants: Nested,
    /// The farm's load per edge as the edges report it (several directors).
    farm: HashMap<String, u64>,
    farm_total: u64,
    /// The packing viewers settle towards: viewers per (stream, edge id).
    plan: Nested,
    /// When the plan was made, and over which edges.
    planned: Option<(Instant, Vec<String>)>,
    next: usize,
    policy: Policy,
    epsilon: f64,
    floor: u64,
    settle: Duration,
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
            placement: HashMap::new(),
            variants: HashMap::new(),
            farm: HashMap::new(),
            farm_total: 0,
            plan: HashMap::new(),
            planned: None,
            next: 0,
            policy,
            epsilon,
            floor,
            settle: Duration::ZERO,
        }
    }

    /// Viewers settle this long after they are first placed (until then
    /// they may move forward on their stream's walk); zero: at once.
    pub fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// The farm's load per edge id, as the edges report it (viewers placed
    /// by every director); loads and the total are then at least these.
    pub fn set_farm(&mut self, loads: HashMap<String, u64>) {
        self.farm_total = loads.values().sum();
        self.farm = loads;
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

    /// Viewers counted now (at least what the farm reports).
    pub fn total(&self) -> u64 {
        self.count.max(self.farm_total)
    }

    /// Viewers on edge `id` (at least what the farm reports).
    pub fn load(&self, id: &str) -> u64 {
        let own = self.load.get(id).copied().unwrap_or(0);
        own.max(self.farm.get(id).copied().unwrap_or(0))
    }

    /// This director's own viewers on edge `id`.
    pub fn own_load(&self, id: &str) -> u64 {
        self.load.get(id).copied().unwrap_or(0)
    }

    /// Viewers per stream and edge id.
    pub fn placement(&self) -> impl Iterator<Item = (&String, &String, u64)> {
        self.placement
            .iter()
            .flat_map(|(s, edges)| edges.iter().map(move |(e, n)| (s, e, *n)))
    }

    fn count_in(&mut self, stream: &str, edge: &str) {
        *self.load.entry(edge.to_owned()).or_default() += 1;
        nested_add(&mut self.placement, stream, edge, 1);
        self.count += 1;
    }

    fn count_out(
        load: &mut HashMap<String, u64>,
        placement: &mut Nested,
        variants: &mut Nested,
        v: &Viewer,
    ) {
        if let Some(n) = load.get_mut(&v.edge) {
            *n = n.saturating_sub(1);
        }
        nested_sub(placement, &v.stream, &v.edge);
        if let Some(variant) = &v.variant {
            nested_sub(variants, &v.stream, variant);
        }
    }

    fn remove(&mut self, viewer: &str) -> Option<Viewer> {
        let i = self.shard(viewer);
        let v = self.viewers[i].remove(viewer)?;
        self.count = self.count.saturating_sub(1);
        Self::count_out(&mut self.load, &mut self.placement, &mut self.variants, &v);
        Some(v)
    }

    /// What `viewer`'s placement calls for at `now`.
    fn verdict(&self, viewer: &str, stream: &str, ring: &Ring, now: Instant) -> Verdict {
        let Some(v) = self.get(viewer).filter(|v| v.stream == stream) else {
            return Verdict::Place(Reason::Home);
        };
        let Some(i) = ring.members().iter().position(|m| m.id == v.edge) else {
            return Verdict::Place(Reason::EdgeGone);
        };
        if self.policy == Policy::RoundRobin {
            return Verdict::Stay(i);
        }
        let total = self.total();
        let bound = self.bound(ring, i, total);
        let settling = now.duration_since(v.placed) < self.settle;
        if settling {
            // Over the plan here and short of it elsewhere: move there, so
            // the stream ends on the edges the packing gives it.
            // The target may be over its bound by up to another ε for a
            // moment: the plan keeps every edge within it, and the
            // over-plan viewers there are leaving (else two full edges
            // holding each other's viewers would never swap).
            if self.viewers_of(stream, &v.edge) > self.planned_for(stream, &v.edge)
                && let Some(e) = self.short_of_plan(stream, ring, total, self.epsilon)
                && e != i
            {
                return Verdict::MoveTo(e, Reason::Consolidated);
            }
            if self.load(&v.edge) <= bound {
                return Verdict::Stay(i);
            }
            return Verdict::Place(Reason::Overloaded);
        }
        let load = self.load(&v.edge);
        if load > u64::from(ring.members()[i].weight.max(1))
            && let Some(e) = self.room_below_capacity(stream, ring, i, total)
        {
            return Verdict::MoveTo(e, Reason::OverCapacity);
        }
        if load <= self.slack_of(bound) {
            Verdict::Stay(i)
        } else {
            Verdict::Place(Reason::Overloaded)
        }
    }

    /// How far past `bound` an edge may go before settled viewers leave it:
    /// (1 + ε) × the bound.
    fn slack_of(&self, bound: u64) -> u64 {
        (bound as f64 * (1.0 + self.epsilon.max(0.0))).ceil() as u64
    }

    /// For edge `i` holding more viewers than its capacity (the viewers it
    /// reports it is sized for, its ring weight; the caller checks), the
    /// first edge on `stream`'s walk below both its own capacity and its
    /// slack: settled viewers move there, however sticky. Without this a farm that grew
    /// (the autoscaler added edges) keeps its first edges over capacity and
    /// its new ones idle, since the slack grows with the share. A move only
    /// ever goes from over capacity to under it, so viewers never swing
    /// back; with the default capacity (1000) it seldom applies.
    fn room_below_capacity(
        &self,
        stream: &str,
        ring: &Ring,
        i: usize,
        total: u64,
    ) -> Option<usize> {
        let members = ring.members();
        ring.walk(hash(stream)).find(|&e| {
            let load = self.load(&members[e].id);
            e != i
                && load < u64::from(members[e].weight.max(1))
                && load < self.slack_of(self.bound(ring, e, total))
        })
    }

    /// Viewers of `stream` the plan puts on edge `id`.
    fn planned_for(&self, stream: &str, id: &str) -> u64 {
        nested_get(&self.plan, stream, id)
    }

    /// The first edge on `stream`'s walk that has fewer of its viewers than
    /// the plan gives it and room under the bound with `total` viewers
    /// (raised by `slack`, a fraction).
    fn short_of_plan(&self, stream: &str, ring: &Ring, total: u64, slack: f64) -> Option<usize> {
        ring.walk(hash(stream)).find(|&e| {
            let id = &ring.members()[e].id;
            let limit = (self.bound(ring, e, total) as f64 * (1.0 + slack.max(0.0))).ceil() as u64;
            self.viewers_of(stream, id) < self.planned_for(stream, id) && self.load(id) < limit
        })
    }

    /// Packs the streams onto the edges as they are now: the largest first,
    /// each on the first edge of its walk with room for all of it, else
    /// over the edges of its walk in order, up to each edge's bound. Settling
    /// viewers then move to match; a stream of any size ends on the fewest
    /// edges the bound allows, and small streams fill what the large ones
    /// leave.
    fn replan(&mut self, ring: &Ring, now: Instant) {
        if self.policy != Policy::BoundedLoad {
            return;
        }
        let fresh = self.planned.as_ref().is_some_and(|(at, members)| {
            now.duration_since(*at) < PLAN_EVERY
                && members.iter().eq(ring.members().iter().map(|m| &m.id))
        });
        if fresh {
            return;
        }
        let ids: Vec<String> = ring.members().iter().map(|m| m.id.clone()).collect();
        let mut order: Vec<(&str, u64)> = self
            .placement
            .iter()
            .map(|(s, edges)| (s.as_str(), edges.values().sum()))
            .collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let total = self.total();
        let mut room: Vec<u64> = (0..ids.len()).map(|e| self.bound(ring, e, total)).collect();
        let mut plan = Nested::new();
        for (stream, n) in order {
            let walk: Vec<usize> = ring.walk(hash(stream)).collect();
            if let Some(&e) = walk.iter().find(|&&e| room[e] >= n) {
                room[e] -= n;
                nested_add(&mut plan, stream, &ids[e], n);
                continue;
            }
            let mut left = n;
            for &e in &walk {
                let take = left.min(room[e]);
                if take > 0 {
                    room[e] -= take;
                    left -= take;
                    nested_add(&mut plan, stream, &ids[e], take);
                }
                if left == 0 {
                    break;
                }
            }
            if left > 0
                && let Some(&home) = walk.first()
            {
                nested_add(&mut plan, stream, &ids[home], left);
            }
        }
        self.plan = plan;
        self.planned = Some((now, ids));
    }

    /// Viewers of `stream` on edge `id`.
    fn viewers_of(&self, stream: &str, id: &str) -> u64 {
        nested_get(&self.placement, stream, id)
    }

    /// Of the edges that hold `stream` and have room under the bound with
    /// `total` viewers, the one holding most of its viewers (ties: the first
    /// on the stream's walk).
    fn fullest_with_room(&self, stream: &str, ring: &Ring, total: u64) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for e in ring.walk(hash(stream)) {
            let id = &ring.members()[e].id;
            let n = self.viewers_of(stream, id);
            if n > 0
                && self.load(id) < self.bound(ring, e, total)
                && best.is_none_or(|(m, _)| n > m)
            {
                best = Some((n, e));
            }
        }
        best.map(|(_, e)| e)
    }

    /// Where a new viewer of `stream` goes: an edge that holds the stream
    /// already and has room (the one with most of its viewers), else the
    /// first edge with room on the stream's walk (its home first).
    fn choose(&self, stream: &str, ring: &Ring) -> Option<usize> {
        match self.policy {
            Policy::BoundedLoad => {
                let total = self.total() + 1;
                if let Some(e) = self.short_of_plan(stream, ring, total, 0.0) {
                    return Some(e);
                }
                if let Some(e) = self.fullest_with_room(stream, ring, total) {
                    return Some(e);
                }
                let loads: Vec<u64> = ring.members().iter().map(|m| self.load(&m.id)).collect();
                ring.choose(hash(stream), |i| loads[i], |i| self.bound(ring, i, total))
            }
            Policy::RoundRobin => Some(self.next.wrapping_add(1) % ring.members().len()),
        }
    }

    /// Where `viewer` watching `stream` goes at `now`: a viewer that stays
    /// where it is is settled here and then (`Kept`, one lock for a
    /// returning viewer); otherwise the edge to fetch its playlist from
    /// before it counts anywhere (`Try`: a request that fails, or names no
    /// stream, places no viewer; [`Assignments::assign`] places it after).
    pub fn propose(
        &mut self,
        viewer: &str,
        stream: &str,
        ring: &Ring,
        now: Instant,
    ) -> Option<Proposal> {
        if ring.is_empty() {
            return None;
        }
        // Returning viewers must keep the plan current too: after a burst
        // they are the only callers.
        self.replan(ring, now);
        match self.verdict(viewer, stream, ring, now) {
            Verdict::Stay(i) => {
                if let Some(v) = self.get_mut(viewer) {
                    v.seen = now;
                }
                Some(Proposal::Kept(Assigned {
                    index: i,
                    reason: Reason::Kept,
                }))
            }
            Verdict::MoveTo(i, _) => Some(Proposal::Try(i)),
            Verdict::Place(_) => self.choose(stream, ring).map(Proposal::Try),
        }
    }

    /// Whether `viewer` is in the table.
    pub fn knows(&self, viewer: &str) -> bool {
        self.get(viewer).is_some()
    }

    /// The edge (index into `ring`) for `viewer` watching `stream` at `now`:
    /// its current edge while that stays right (see the module), else a
    /// new one.
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
        self.replan(ring, now);
        let (target, reason) = match self.verdict(viewer, stream, ring, now) {
            Verdict::Stay(i) => {
                if let Some(v) = self.get_mut(viewer) {
                    v.seen = now;
                }
                return Some(Assigned {
                    index: i,
                    reason: Reason::Kept,
                });
            }
            Verdict::MoveTo(i, reason) => (Some(i), reason),
            Verdict::Place(reason) => (None, reason),
        };
        let before = self.remove(viewer).filter(|v| v.stream == stream);
        let (placed, given) = before.map_or((now, Given::default()), |v| (v.placed, v.given));
        let i = match target {
            Some(i) => i,
            None => {
                let i = self.choose(stream, ring)?;
                if self.policy == Policy::RoundRobin {
                    self.next = self.next.wrapping_add(1);
                }
                i
            }
        };
        let reason = match reason {
            Reason::Home if ring.walk(hash(stream)).next() != Some(i) => Reason::Spilled,
            r => r,
        };
        let edge = ring.members()[i].id.clone();
        self.count_in(stream, &edge);
        let shard = self.shard(viewer);
        self.viewers[shard].insert(
            viewer.to_owned(),
            Viewer {
                stream: stream.to_owned(),
                edge,
                seen: now,
                placed,
                given,
                variant: None,
            },
        );
        Some(Assigned { index: i, reason })
    }

    /// Records that `viewer` follows `variant`'s media playlist now.
    pub fn watching(&mut self, viewer: &str, variant: &str) {
        let i = self.shard(viewer);
        let Some(v) = self.viewers[i].get_mut(viewer) else {
            return;
        };
        if v.variant.as_deref() == Some(variant) {
            return;
        }
        if let Some(old) = v.variant.replace(variant.to_owned()) {
            nested_sub(&mut self.variants, &v.stream, &old);
        }
        nested_add(&mut self.variants, &v.stream, variant, 1);
    }

    /// Viewers per stream, then variant.
    pub fn variants(
        &self,
    ) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> {
        self.variants
            .iter()
            .map(|(s, v)| (s.clone(), v.iter().map(|(k, n)| (k.clone(), *n)).collect()))
            .collect()
    }

    /// The edges `viewer`'s segments were given on, for a playlist that
    /// lists `first_msn..=last_msn` (older ones are forgotten; a playlist
    /// that ends before everything remembered is a new publish, numbered
    /// afresh; one a segment or two behind is an edge that lags, and the
    /// segments it lists keep the URIs given).
    pub fn given(&mut self, viewer: &str, first_msn: u64, last_msn: u64) -> Given {
        self.given_elsewhere(viewer, first_msn, last_msn, "")
            .unwrap_or_default()
    }

    /// [`given`](Self::given), but `None` when every segment given is on
    /// `url`: a viewer that never moved (nearly all of them) costs no copy.
    pub fn given_elsewhere(
        &mut self,
        viewer: &str,
        first_msn: u64,
        last_msn: u64,
        url: &str,
    ) -> Option<Given> {
        let v = self.get_mut(viewer)?;
        if v.given.before_all(last_msn) {
            v.given = Given::default();
        }
        v.given.forget_before(first_msn);
        (!v.given.all_on(url)).then(|| v.given.clone())
    }

    /// Records that `viewer` has been given a playlist listing
    /// `first_msn..=last_msn`, the segments new to it on `url`.
    pub fn give(&mut self, viewer: &str, first_msn: u64, last_msn: u64, url: &str) {
        if let Some(v) = self.get_mut(viewer) {
            v.given.give(first_msn, last_msn, url);
        }
    }

    /// Where streams sit on the edges of `rings`.
    pub fn report<'a>(&self, rings: impl Iterator<Item = &'a Ring>) -> PlacementReport {
        let total = self.total();
        let mut report = PlacementReport {
            total,
            variants: self.variants(),
            ..PlacementReport::default()
        };
        for ring in rings {
            for (i, m) in ring.members().iter().enumerate() {
                report.edges.push(EdgeReport {
                    id: m.id.clone(),
                    viewers: self.load(&m.id),
                    bound: self.bound(ring, i, total),
                });
            }
        }
        let mut keys: Vec<(&String, &String)> = self
            .placement
            .iter()
            .chain(self.plan.iter())
            .flat_map(|(s, edges)| edges.keys().map(move |e| (s, e)))
            .collect();
        keys.sort();
        keys.dedup();
        for (stream, edge) in keys {
            report
                .streams
                .entry(stream.clone())
                .or_default()
                .push(StreamOnEdge {
                    edge: edge.clone(),
                    viewers: self.viewers_of(stream, edge),
                    planned: self.planned_for(stream, edge),
                });
        }
        report
    }

    /// Forgets viewers not seen for `timeout` (one pass over the table).
    pub fn expire(&mut self, now: Instant, timeout: Duration) {
        let (load, placement, variants) = (&mut self.load, &mut self.placement, &mut self.variants);
        let mut count = 0;
        for shard in &mut self.viewers {
            shard.retain(|_, v| {
                let keep = now.duration_since(v.seen) <= timeout;
                if !keep {
                    Self::count_out(load, placement, variants, v);
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

    /// Edges at the default capacity (1000 viewers each).
    fn ring(ids: &[&str]) -> Ring {
        ring_of(ids, 1000)
    }

    fn ring_of(ids: &[&str], capacity: u32) -> Ring {
        Ring::new(
            ids.iter()
                .map(|id| Member {
                    id: (*id).into(),
                    url: format!("http://{id}"),
                    weight: capacity,
                })
                .collect(),
        )
    }

    #[test]
    fn a_viewer_moved_back_and_forth_keeps_every_uri_it_was_given() {
        let mut g = Given::default();
        assert_eq!(g.url_of(0), None);
        assert!(!g.before_all(0));
        assert!(g.all_on("http://x"));
        g.give(23, 32, "http://x");
        g.give(31, 40, "http://y");
        g.give(36, 45, "http://x");
        assert_eq!(g.url_of(30), Some("http://x"));
        assert!(g.before_all(22) && !g.before_all(23));
        assert_eq!(g.url_of(33), Some("http://y"));
        assert_eq!(g.url_of(40), Some("http://y"));
        assert_eq!(g.url_of(41), Some("http://x"));
        assert_eq!(g.url_of(46), None, "not given yet: the current edge");
        assert!(!g.all_on("http://x"));
        // A playlist from 36 on lists nothing before y's run.
        g.forget_before(36);
        assert_eq!(g.url_of(36), Some("http://y"));
        g.forget_before(41);
        assert!(g.all_on("http://x"), "{g:?}");
        // Giving again what was given changes nothing.
        g.give(35, 44, "http://z");
        assert_eq!(g.url_of(44), Some("http://x"));
    }

    #[test]
    fn a_moved_viewer_takes_what_it_was_given_along() {
        let now = Instant::now();
        let mut t = Assignments::new(Policy::BoundedLoad, 0.25, 1);
        let both = ring(&["a", "b"]);
        let first = t.assign("v", "s", &both, now).expect("edge");
        let was = both.members()[first.index].url.clone();
        t.give("v", 11, 20, &was);
        // Its edge leaves: it moves, and segments up to 20 stay where they were.
        let other = if was == "http://a" { "b" } else { "a" };
        let moved = t.assign("v", "s", &ring(&[other]), now).expect("edge");
        assert_eq!(moved.index, 0);
        let given = t.given("v", 15, 22);
        assert_eq!(given.url_of(20), Some(was.as_str()));
        assert_eq!(given.url_of(21), None);
        // A playlist a segment behind (an edge that lags) keeps them.
        assert_eq!(t.given("v", 10, 19).url_of(19), Some(was.as_str()));
        // A new publish numbered from 0 forgets it all.
        assert_eq!(t.given("v", 0, 3), Given::default());
    }

    #[test]
    fn viewers_are_counted_per_variant_they_follow_until_they_go() {
        let now = Instant::now();
        let r = ring(&["a", "b"]);
        let mut t = Assignments::new(Policy::BoundedLoad, 0.25, 1);
        for v in 0..10 {
            t.assign(&format!("v{v}"), "s", &r, now).expect("edge");
            t.watching(&format!("v{v}"), if v < 7 { "720p" } else { "360p" });
        }
        t.watching("v0", "720p");
        t.watching("nobody", "720p");
        let of = |t: &Assignments, variant: &str| {
            t.variants()
                .get("s")
                .and_then(|v| v.get(variant).copied())
                .unwrap_or(0)
        };
        assert_eq!((of(&t, "720p"), of(&t, "360p")), (7, 3));
        // A viewer switches rungs (ABR): counted once, under the new one.
        t.watching("v0", "360p");
        assert_eq!((of(&t, "720p"), of(&t, "360p")), (6, 4));
        assert_eq!(t.report(std::iter::once(&r)).variants["s"]["360p"], 4);
        // Viewers that stop polling are forgotten, variants too.
        t.expire(now + Duration::from_secs(60), Duration::from_secs(30));
        assert!(t.variants().is_empty(), "{:?}", t.variants());
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
                    reason: Reason::Kept,
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

    /// Result of a simulated audience on virtual time.
    struct Sim {
        /// Mean over streams of the edges each one sits on at the end.
        edges_per_stream: f64,
        /// Viewers per edge at the end.
        loads: Vec<u64>,
        /// Moves of settled viewers.
        settled_moves: usize,
        /// Mean over streams of the edges each sat on during the last 10 s.
        late_edges_per_stream: f64,
    }

    /// `audiences` arrive interleaved within one second (a burst), then
    /// reload every 2 s for 40 s, on `edges` edges named from `seed`.
    fn simulate(audiences: &[u64], edges: usize, seed: u64, settle: Duration) -> Sim {
        simulate_arrivals(audiences, edges, seed, settle, true)
    }

    /// As [`simulate`]; `shuffled` false: the streams' audiences arrive one
    /// stream after another (still within the second).
    fn simulate_arrivals(
        audiences: &[u64],
        edges: usize,
        seed: u64,
        settle: Duration,
        shuffled: bool,
    ) -> Sim {
        let ids: Vec<String> = (0..edges).map(|i| format!("edge-{seed}-{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let r = ring(&refs);
        let mut t = Assignments::new(Policy::BoundedLoad, 0.25, 10).with_settle(settle);
        let start = Instant::now();
        // Interleaved arrival order, shuffled deterministically.
        let mut viewers: Vec<(String, usize)> = audiences
            .iter()
            .enumerate()
            .flat_map(|(s, &n)| (0..n).map(move |k| (format!("s{s}v{k}"), s)))
            .collect();
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for i in (1..viewers.len()).rev().filter(|_| shuffled) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            viewers.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let n = viewers.len() as u64;
        let mut edge_of: HashMap<String, usize> = HashMap::new();
        let mut settled_moves = 0;
        let mut late: HashMap<usize, std::collections::HashSet<usize>> = HashMap::new();
        for step in 0..=40_000u64 / 50 {
            let ms = step * 50;
            let now = start + Duration::from_millis(ms);
            for (k, (v, s)) in viewers.iter().enumerate() {
                // Arrival spread over the first second; reloads every 2 s.
                let arrive = k as u64 * 1000 / n;
                if ms < arrive || (ms - arrive) % 2000 >= 50 {
                    continue;
                }
                let stream = format!("stream-{s}");
                // As the director does: propose, then place after the fetch.
                let a = match t.propose(v, &stream, &r, now).expect("edge") {
                    Proposal::Kept(a) => a,
                    Proposal::Try(_) => t.assign(v, &stream, &r, now).expect("edge"),
                };
                if let Some(old) = edge_of.insert(v.clone(), a.index)
                    && old != a.index
                    && ms - arrive >= settle.as_millis() as u64
                {
                    settled_moves += 1;
                }
                if ms >= 30_000 {
                    late.entry(*s).or_default().insert(a.index);
                }
            }
        }
        let mut per_stream: HashMap<usize, std::collections::HashSet<usize>> = HashMap::new();
        for (v, s) in &viewers {
            per_stream.entry(*s).or_default().insert(edge_of[v]);
        }
        let mean = |m: &HashMap<usize, std::collections::HashSet<usize>>| {
            m.values().map(|e| e.len()).sum::<usize>() as f64 / m.len().max(1) as f64
        };
        Sim {
            edges_per_stream: mean(&per_stream),
            loads: ids.iter().map(|id| t.own_load(id)).collect(),
            settled_moves,
            late_edges_per_stream: mean(&late),
        }
    }

    #[test]
    fn a_burst_settles_each_stream_on_few_edges_within_the_bound() {
        for audiences in [
            &[45u64, 25, 10, 10][..],
            &[30, 15, 8, 4],
            &[100, 50, 25, 15, 10],
            &[25, 12, 8, 5],
        ] {
            let total: u64 = audiences.iter().sum();
            let bound = (1.25 * total as f64 / 3.0).ceil() as u64 + 1;
            let (mut with, mut without) = (0.0, 0.0);
            let seeds = 20;
            for (seed, shuffled) in (0..seeds).flat_map(|s| [(s, true), (s, false)]) {
                let s = simulate_arrivals(audiences, 3, seed, Duration::from_secs(10), shuffled);
                with += s.late_edges_per_stream;
                without += simulate(audiences, 3, seed, Duration::ZERO).edges_per_stream;
                assert_eq!(s.settled_moves, 0, "{audiences:?} seed {seed}");
                assert!(
                    s.loads.iter().all(|&l| l <= bound.max(10)),
                    "{audiences:?} seed {seed}: loads {:?}, bound {bound}",
                    s.loads
                );
                assert!(
                    s.late_edges_per_stream <= 1.5,
                    "{audiences:?} seed {seed}: {:.2} edges per stream, loads {:?}",
                    s.late_edges_per_stream,
                    s.loads
                );
            }
            let (with, without) = (with / (2 * seeds) as f64, without / (2 * seeds) as f64);
            println!(
                "{audiences:?}: edges per stream {with:.2} settling, {without:.2} placed once"
            );
            assert!(with <= 1.5, "{audiences:?}: {with:.2} edges per stream");
        }
    }

    #[test]
    fn two_directors_bound_the_farm_not_their_own_share() {
        let now = Instant::now();
        let r = ring(&["a", "b", "c"]);
        let farm = |x: &Assignments, y: &Assignments| -> HashMap<String, u64> {
            ["a", "b", "c"]
                .iter()
                .map(|id| ((*id).to_owned(), x.own_load(id) + y.own_load(id)))
                .collect()
        };
        // Two directors behind one load balancer, viewers of one stream
        // alternating between them; the edges' reports (both directors'
        // viewers) reach each every ten placements.
        let mut one = Assignments::new(Policy::BoundedLoad, 0.25, 1);
        let mut two = Assignments::new(Policy::BoundedLoad, 0.25, 1);
        for v in 0..120 {
            if v % 10 == 0 {
                let f = farm(&one, &two);
                one.set_farm(f.clone());
                two.set_farm(f);
            }
            let t = if v % 2 == 0 { &mut one } else { &mut two };
            t.assign(&format!("v{v}"), "s", &r, now).expect("edge");
        }
        // 120 viewers, bound 50 per edge; a report's lag (ten placements
        // here) lets at most that many past it.
        let f = farm(&one, &two);
        for id in ["a", "b", "c"] {
            assert!(f[id] <= 60, "edge {id}: {} viewers", f[id]);
        }
        assert_eq!(f.values().sum::<u64>(), 120);
    }

    #[test]
    fn a_grown_farm_takes_viewers_off_edges_over_capacity() {
        // Edges sized for 10 viewers; 65 viewers of 5 streams settle on 5
        // edges (13 each: within the slack of a 5-edge farm), then the
        // autoscaler adds 3 edges.
        let start = Instant::now();
        let five = ["a", "b", "c", "d", "e"];
        let eight = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let mut t = Assignments::new(Policy::BoundedLoad, 0.25, 1);
        let viewers: Vec<(String, String)> = (0..65)
            .map(|v| (format!("v{v}"), format!("s{}", v % 5)))
            .collect();
        let r5 = ring_of(&five, 10);
        for (v, s) in &viewers {
            t.assign(v, s, &r5, start).expect("edge");
        }
        let loads = |t: &Assignments, ids: &[&str]| -> Vec<u64> {
            ids.iter().map(|id| t.load(id)).collect()
        };
        let over: u64 = loads(&t, &five).iter().map(|&l| l.saturating_sub(10)).sum();
        assert!(over > 0, "{:?}", loads(&t, &five));
        let r8 = ring_of(&eight, 10);
        let mut moves = HashMap::<String, usize>::new();
        for round in 1..=5u64 {
            let now = start + Duration::from_secs(60 * round);
            for (v, s) in &viewers {
                let a = t.assign(v, s, &r8, now).expect("edge");
                if a.reason != Reason::Kept {
                    assert_eq!(a.reason, Reason::OverCapacity);
                    *moves.entry(v.clone()).or_default() += 1;
                }
            }
        }
        let after = loads(&t, &eight);
        assert!(
            after.iter().all(|&l| l <= 10),
            "still over capacity: {after:?}"
        );
        assert_eq!(after.iter().sum::<u64>(), 65);
        // Each viewer moved at most once, and only as many as were over.
        assert!(moves.values().all(|&n| n == 1), "{moves:?}");
        assert!(
            moves.len() as u64 <= over,
            "{} moves, {over} over",
            moves.len()
        );
    }
}
