//! The autoscaler: every period it reads the edges' reports from the node
//! registry, asks the policy (the `autoscale` crate) how big the farm should
//! be, and acts through a [`Provider`]. Growing takes back edges it was
//! draining before asking for new ones (a warm cache beats a cold one);
//! shrinking drains the edges with the fewest viewers (by the directors'
//! count) and stops each only once it has served nothing for a while.

pub mod kubernetes;
pub mod local;
pub mod provider;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoscale::{
    AutoscaleConfig, Decision, Drains, EdgeSample, EdgeState, Figures, Policy, Removal, Verdict,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use provider::{Provider, ProviderError};

use crate::db::now_ms;
use crate::nodes::Nodes;

/// Decisions kept for the API.
const DECISIONS_KEPT: usize = 100;
/// How often drains are checked (edges report every second).
const DRAIN_TICK: Duration = Duration::from_millis(250);

media_core::metrics! {
    /// The autoscaler's metrics.
    pub struct AutoscaleMetrics under "autoscale" {
        /// Edges in the farm (ready and starting)
        current as "edges": Gauge,
        /// Edges the policy wants
        desired as "desired_edges": Gauge,
        /// Edges asked for, not reporting yet
        starting as "starting_edges": Gauge,
        /// Edges the autoscaler is draining
        draining as "draining_edges": Gauge,
        /// Evaluations, by the rule that decided
        decisions: Family<ReasonLabel, Counter>,
        /// Edges asked of the provider
        added as "edges_added": Counter,
        /// Edges stopped, by why (quiet, timed_out, gone, start_timeout)
        removed as "edges_removed": Family<VerdictLabel, Counter>,
        /// Provider calls that failed
        provider_errors: Counter,
        /// Each edge's load against its capacity by metric (1 = full): what an HPA or KEDA
        /// would scale edges on
        edge_utilisation: Family<EdgeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EdgeLabel {
    /// The edge's node id (its pod name under Kubernetes, for adapters
    /// that map series to pods).
    pod: String,
    metric: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: &'static str,
}

/// An edge asked for and not reporting yet.
#[derive(Clone, Debug, Serialize)]
pub struct Pending {
    /// The id it will report under, when the provider knows it.
    pub id: Option<String>,
    /// Unix ms it was asked for.
    pub since_ms: i64,
}

/// What `GET /autoscale` shows.
#[derive(Clone, Debug, Serialize)]
pub struct AutoscaleStatus {
    /// The provider acting.
    pub provider: &'static str,
    /// `min_edges`, `max_edges` and the period.
    pub min_edges: u32,
    /// See `min_edges`.
    pub max_edges: u32,
    /// Seconds between evaluations.
    pub period_seconds: f64,
    /// Edges in the farm now (ready and starting).
    pub current: u32,
    /// What the last evaluation wanted.
    pub desired: u32,
    /// Edges asked for, not reporting yet.
    pub starting: Vec<Pending>,
    /// Edges being drained for removal.
    pub draining: Vec<Removal>,
    /// The last evaluations, newest last.
    pub decisions: Vec<Decision>,
    /// Actions taken, newest last (`added edge-x`, `draining edge-y: ...`).
    pub actions: Vec<Action>,
    /// The last provider error, if any.
    pub last_error: Option<String>,
    /// Whether this process scales (holds the lease); another control
    /// process does when not.
    pub leader: bool,
}

/// Something the autoscaler did.
#[derive(Clone, Debug, Serialize)]
pub struct Action {
    /// Unix ms.
    pub at_ms: i64,
    /// `add`, `undrain`, `drain`, `remove`, `cancel_start`.
    pub kind: &'static str,
    /// The edge, where known.
    pub edge: Option<String>,
    /// Why.
    pub detail: String,
}

struct State {
    policy: Policy,
    drains: Drains,
    pending: Vec<Pending>,
    ready_since: BTreeMap<String, i64>,
    seen_beat: BTreeMap<String, i64>,
    decisions: VecDeque<Decision>,
    actions: VecDeque<Action>,
    last_error: Option<String>,
    leader: bool,
}

/// The loop and what it remembers.
pub struct Autoscaler {
    config: AutoscaleConfig,
    nodes: Arc<Nodes>,
    provider: Arc<dyn Provider>,
    metrics: AutoscaleMetrics,
    state: Mutex<State>,
    /// The control processes' leader lease: only its holder scales.
    control: Option<Arc<crate::leader::Leader>>,
}

impl Autoscaler {
    /// An autoscaler over the edges of `nodes`, acting through `provider`.
    pub fn new(
        config: AutoscaleConfig,
        nodes: Arc<Nodes>,
        provider: Arc<dyn Provider>,
        metrics: AutoscaleMetrics,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                policy: Policy::new(config.clone()),
                drains: Drains::default(),
                pending: Vec::new(),
                ready_since: BTreeMap::new(),
                seen_beat: BTreeMap::new(),
                decisions: VecDeque::new(),
                actions: VecDeque::new(),
                last_error: None,
                leader: false,
            }),
            config,
            nodes,
            provider,
            metrics,
            control: None,
        }
    }

    /// Scales only while `leader` holds the control processes' lease (with
    /// several control processes on one database, one of them scales).
    pub fn with_control_leader(mut self, leader: Arc<crate::leader::Leader>) -> Self {
        self.control = Some(leader);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the farm stands and what was decided lately.
    pub fn status(&self) -> AutoscaleStatus {
        let s = self.lock();
        let last = s.decisions.back();
        AutoscaleStatus {
            provider: self.provider.name(),
            min_edges: self.config.min_edges,
            max_edges: self.config.max_edges,
            period_seconds: self.config.period_seconds,
            current: last.map_or(0, |d| d.current),
            desired: last.map_or(0, |d| d.desired),
            starting: s.pending.clone(),
            draining: s.drains.list(),
            decisions: s.decisions.iter().cloned().collect(),
            actions: s.actions.iter().cloned().collect(),
            last_error: s.last_error.clone(),
            leader: s.leader,
        }
    }

    /// Runs until `cancel`: an evaluation every period, drains checked in between.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        info!(provider = self.provider.name(), period = ?self.config.period(), "autoscaler running");
        let mut evaluate = tokio::time::interval(self.config.period());
        evaluate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain = tokio::time::interval(DRAIN_TICK);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = evaluate.tick() => self.evaluate().await,
                _ = drain.tick() => self.check_drains().await,
            }
        }
    }

    /// One evaluation and what follows from it, when this process leads.
    pub async fn evaluate(&self) {
        let leads_control = self.control.as_ref().is_none_or(|l| l.is_leader());
        let leader = leads_control
            && match self.provider.leader().await {
                Ok(l) => l,
                Err(e) => {
                    self.provider_failed("holding the lease", &e);
                    false
                }
            };
        let was = std::mem::replace(&mut self.lock().leader, leader);
        if was != leader {
            info!(leader, "autoscaler leadership changed");
        }
        if !leader {
            return;
        }
        let now = now_ms();
        let rows = self.nodes.edges();
        let viewers = self.nodes.viewers_per_edge();
        let (decision, plan) = {
            let mut s = self.lock();
            let directors = self.nodes.directors_alive() > 0;
            let samples = self.samples(&mut s, &rows, directors, now);
            let d = s.policy.evaluate(now, &samples);
            self.export_utilisation(&s.policy, &samples);
            let plan = self.plan(&mut s, &d, &rows, &viewers, now);
            s.decisions.push_back(d.clone());
            while s.decisions.len() > DECISIONS_KEPT {
                s.decisions.pop_front();
            }
            (d, plan)
        };
        self.metrics.current.set(i64::from(decision.current));
        self.metrics.desired.set(i64::from(decision.desired));
        self.metrics
            .decisions
            .get_or_create(&ReasonLabel {
                reason: decision.reason.name(),
            })
            .inc();
        if decision.desired != decision.current {
            info!(
                current = decision.current,
                desired = decision.desired,
                reason = decision.reason.name(),
                readings = ?decision.readings.iter().map(|r| (r.metric.name(), r.utilisation, r.recommendation)).collect::<Vec<_>>(),
                "autoscale decision"
            );
        }
        if plan.add > 0 {
            match self.provider.add(plan.add).await {
                Ok(ids) => {
                    self.metrics.added.inc_by(u64::from(plan.add));
                    let mut s = self.lock();
                    let known = ids.len();
                    for id in ids {
                        self.act(
                            &mut s,
                            "add",
                            Some(id.clone()),
                            "the policy wants more edges".into(),
                        );
                        s.pending.push(Pending {
                            id: Some(id),
                            since_ms: now,
                        });
                    }
                    for _ in known..usize::try_from(plan.add).unwrap_or(0) {
                        self.act(&mut s, "add", None, "the policy wants more edges".into());
                        s.pending.push(Pending {
                            id: None,
                            since_ms: now,
                        });
                    }
                }
                Err(e) => self.provider_failed("adding edges", &e),
            }
        }
        for id in plan.cancel_starts {
            if let Err(e) = self.provider.remove(&id).await {
                self.provider_failed("cancelling a start", &e);
            }
        }
        self.update_gauges();
    }

    /// The policy's view of the edges: live ones ready, ours being drained
    /// (and operators' drains) draining, asked-for ones starting.
    fn samples(
        &self,
        s: &mut State,
        rows: &[control_client::types::EdgeRow],
        directors: bool,
        now: i64,
    ) -> Vec<EdgeSample> {
        let mut samples = Vec::new();
        for r in rows.iter().filter(|r| r.state != "dead") {
            let new = !s.ready_since.contains_key(&r.id);
            let since = *s.ready_since.entry(r.id.clone()).or_insert(now);
            // An edge we asked for is ready once it reports; one we could
            // not name (an orchestrator's) is any edge new to us.
            if let Some(i) = s
                .pending
                .iter()
                .position(|p| p.id.as_deref() == Some(&r.id))
            {
                s.pending.remove(i);
            } else if new && let Some(i) = s.pending.iter().position(|p| p.id.is_none()) {
                s.pending.remove(i);
            }
            let state = if r.state == "draining" || s.drains.contains(&r.id) {
                EdgeState::Draining
            } else {
                EdgeState::Ready
            };
            samples.push(EdgeSample {
                id: r.id.clone(),
                state,
                figures: Some(Figures {
                    egress_bps: r.load.egress_bps,
                    connections: r.load.connections,
                    viewers: directors.then_some(r.viewers),
                    capacity: r.load.capacity,
                    cpu: r.cpu,
                }),
                ready_since_ms: since,
            });
        }
        let alive: Vec<&str> = rows
            .iter()
            .filter(|r| r.state != "dead")
            .map(|r| r.id.as_str())
            .collect();
        s.ready_since.retain(|id, _| alive.contains(&id.as_str()));
        for p in &s.pending {
            samples.push(EdgeSample {
                id: p.id.clone().unwrap_or_else(|| "(starting)".into()),
                state: EdgeState::Starting,
                figures: None,
                ready_since_ms: now,
            });
        }
        samples
    }

    /// Turns a decision into actions: what to ask of the provider (done by
    /// the caller, outside the lock) and which drains begin or end here.
    fn plan(
        &self,
        s: &mut State,
        d: &Decision,
        rows: &[control_client::types::EdgeRow],
        viewers: &BTreeMap<String, u64>,
        now: i64,
    ) -> Plan {
        let mut plan = Plan::default();
        if d.desired > d.current {
            let mut need = d.desired - d.current;
            // Warm edges on their way out come back first, newest drain first.
            let mut ours = s.drains.list();
            ours.reverse();
            for r in ours.into_iter().take(usize::try_from(need).unwrap_or(0)) {
                s.drains.cancel(&r.id);
                self.nodes.mark_draining(&r.id, false);
                self.act(
                    s,
                    "undrain",
                    Some(r.id),
                    format!("{}: load rose again", d.reason.name()),
                );
                need -= 1;
            }
            plan.add = need;
        } else if d.desired < d.current {
            let mut excess = usize::try_from(d.current - d.desired).unwrap_or(0);
            // Edges not reporting yet have no viewers: those go first.
            while excess > 0 {
                let Some(i) = s.pending.iter().rposition(|p| p.id.is_some()) else {
                    break;
                };
                let p = s.pending.remove(i);
                if let Some(id) = p.id {
                    self.act(s, "cancel_start", Some(id.clone()), d.reason.name().into());
                    plan.cancel_starts.push(id);
                }
                excess -= 1;
            }
            let candidates: Vec<(String, u64)> = rows
                .iter()
                .filter(|r| r.state == "live" && !s.drains.contains(&r.id))
                .filter(|r| self.provider.owns(&r.id))
                .map(|r| {
                    (
                        r.id.clone(),
                        viewers.get(&r.id).copied().unwrap_or(r.load.connections),
                    )
                })
                .collect();
            for id in autoscale::victims(&candidates, excess) {
                let v = candidates.iter().find(|c| c.0 == id).map_or(0, |c| c.1);
                s.drains.begin(&id, now);
                self.nodes.mark_draining(&id, true);
                self.act(
                    s,
                    "drain",
                    Some(id),
                    format!("{}: {v} viewers, the fewest", d.reason.name()),
                );
            }
        }
        plan
    }

    /// Stops the draining edges that are done, and gives up on edges that
    /// never reported.
    pub async fn check_drains(&self) {
        if !self.lock().leader {
            return;
        }
        let now = now_ms();
        let rows = self.nodes.edges();
        let (due, timed_out) = {
            let mut s = self.lock();
            for r in &rows {
                // Each report once: its requests since the previous one.
                if s.drains.contains(&r.id) && s.seen_beat.get(&r.id) != Some(&r.last_heartbeat_ms)
                {
                    s.seen_beat.insert(r.id.clone(), r.last_heartbeat_ms);
                    s.drains.report(&r.id, r.load.requests, now);
                }
            }
            let reporting = |id: &str| rows.iter().any(|r| r.id == id && r.state != "dead");
            let due = s.drains.due(now, &self.config, reporting);
            let limit = now - (self.config.start_timeout_seconds * 1000.0) as i64;
            let (old, young): (Vec<Pending>, Vec<Pending>) =
                s.pending.drain(..).partition(|p| p.since_ms < limit);
            s.pending = young;
            for p in &old {
                self.act(
                    &mut s,
                    "start_timeout",
                    p.id.clone(),
                    "never reported".into(),
                );
            }
            (due, old)
        };
        for (id, verdict) in due {
            let label = match verdict {
                Verdict::Quiet => "quiet",
                Verdict::TimedOut => "timed_out",
                Verdict::Gone => "gone",
                Verdict::Wait => continue,
            };
            match self.provider.remove(&id).await {
                Ok(()) => {
                    self.metrics
                        .removed
                        .get_or_create(&VerdictLabel { verdict: label })
                        .inc();
                    self.nodes.forget_edge(&id);
                    let mut s = self.lock();
                    s.seen_beat.remove(&id);
                    self.act(&mut s, "remove", Some(id), format!("drained: {label}"));
                }
                Err(e) => {
                    self.provider_failed("removing an edge", &e);
                    // Try again on the next tick.
                    self.lock().drains.begin(&id, now);
                }
            }
        }
        for p in timed_out {
            self.metrics
                .removed
                .get_or_create(&VerdictLabel {
                    verdict: "start_timeout",
                })
                .inc();
            if let Some(id) = p.id
                && let Err(e) = self.provider.remove(&id).await
            {
                self.provider_failed("removing an edge that never reported", &e);
            }
        }
        self.update_gauges();
    }

    /// Sets each ready edge's utilisation gauges; edges gone lose theirs.
    fn export_utilisation(&self, policy: &Policy, samples: &[EdgeSample]) {
        self.metrics.edge_utilisation.clear();
        for e in samples.iter().filter(|e| e.state == EdgeState::Ready) {
            let Some(f) = &e.figures else { continue };
            for (metric, _) in self.config.targets() {
                if let Some(u) = policy.utilisation(metric, f) {
                    self.metrics
                        .edge_utilisation
                        .get_or_create(&EdgeLabel {
                            pod: e.id.clone(),
                            metric: metric.name(),
                        })
                        .set(u);
                }
            }
        }
    }

    fn update_gauges(&self) {
        let s = self.lock();
        self.metrics
            .starting
            .set(i64::try_from(s.pending.len()).unwrap_or(i64::MAX));
        self.metrics
            .draining
            .set(i64::try_from(s.drains.list().len()).unwrap_or(i64::MAX));
    }

    fn act(&self, s: &mut State, kind: &'static str, edge: Option<String>, detail: String) {
        info!(kind, edge = ?edge, %detail, "autoscaler action");
        s.actions.push_back(Action {
            at_ms: now_ms(),
            kind,
            edge,
            detail,
        });
        while s.actions.len() > DECISIONS_KEPT {
            s.actions.pop_front();
        }
    }

    fn provider_failed(&self, what: &str, e: &ProviderError) {
        warn!(provider = self.provider.name(), error = %e, "{what} failed");
        self.metrics.provider_errors.inc();
        self.lock().last_error = Some(format!("{what}: {e}"));
    }
}

/// What an evaluation asks of the provider.
#[derive(Default)]
struct Plan {
    add: u32,
    cancel_starts: Vec<String>,
}
