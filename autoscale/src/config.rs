//! `[autoscale]`: the policy's knobs, named and defaulted as Kubernetes'
//! HorizontalPodAutoscaler names them, so an operator who knows one knows
//! the other.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything under `[autoscale]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoscaleConfig {
    /// Off by default: a farm scales only when an operator says how.
    pub enabled: bool,
    /// `local` (processes on this host) or `kubernetes` (a Deployment's scale).
    pub provider: String,
    /// Never fewer edges than this.
    pub min_edges: u32,
    /// Never more edges than this.
    pub max_edges: u32,
    /// How often the policy runs (HPA: 15 s).
    pub period_seconds: f64,
    /// No action while every metric is within this share of its target (HPA: 0.1).
    pub tolerance: f64,
    /// Egress an edge can sustain, bits per second; its egress is measured
    /// against this times its relative capacity. 0 leaves egress out.
    pub edge_egress_bps: u64,
    /// Target share of `edge_egress_bps` (the first metric).
    pub target_egress: f64,
    /// Target viewers (by the directors' count) per unit of an edge's
    /// reported capacity; 0 leaves viewers out. Needs a director reporting.
    pub target_viewers: f64,
    /// Target connections per unit of an edge's reported capacity (its
    /// viewers); 0 leaves connections out.
    pub target_connections: f64,
    /// Target CPU load per core; 0 leaves CPU out.
    pub target_cpu: f64,
    /// A new edge's CPU is not counted for this long: it is cold, filling
    /// its cache from the origin (HPA's CPU initialisation period).
    pub warmup_seconds: f64,
    /// A spike must last this long before it scales up (HPA: 0).
    pub scale_up_window_seconds: f64,
    /// Scale down only to the highest recommendation of this window (HPA: 300 s).
    pub scale_down_window_seconds: f64,
    /// Per period, grow by at most this share of the farm (HPA: 100 %)...
    pub scale_up_percent: u32,
    /// ...or by this many edges, whichever is more (HPA: 4).
    pub scale_up_edges: u32,
    /// Per period, shrink by at most this share of the farm (HPA: 100 %)...
    pub scale_down_percent: u32,
    /// ...and by at most this many edges (0: no such limit). Drains run in
    /// parallel; one at a time keeps the most warm cache.
    pub scale_down_edges: u32,
    /// A draining edge is stopped once it served no request for this long
    /// (players that still hold an old playlist fetch its last segments)...
    pub drain_quiet_seconds: f64,
    /// ...but never sooner than this after the drain began (a director poll,
    /// a playlist reload and the longest segment fetch)...
    pub drain_min_seconds: f64,
    /// ...and at the latest this long after it began, quiet or not.
    pub drain_max_seconds: f64,
    /// An edge asked for and not reporting within this long is given up on.
    pub start_timeout_seconds: f64,
    /// Known events: at least `min_edges` from `from` until `until`.
    pub schedule: Vec<ScheduledMinimum>,
    /// The `local` provider.
    pub local: LocalConfig,
    /// The `kubernetes` provider.
    pub kubernetes: KubernetesConfig,
}

impl Default for AutoscaleConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            provider: "local".into(),
            min_edges: 1,
            max_edges: 10,
            period_seconds: 15.0,
            tolerance: 0.1,
            edge_egress_bps: 0,
            target_egress: 0.7,
            target_viewers: 0.8,
            target_connections: 1.0,
            target_cpu: 0.7,
            warmup_seconds: 60.0,
            scale_up_window_seconds: 0.0,
            scale_down_window_seconds: 300.0,
            scale_up_percent: 100,
            scale_up_edges: 4,
            scale_down_percent: 100,
            scale_down_edges: 0,
            drain_quiet_seconds: 6.0,
            drain_min_seconds: 8.0,
            drain_max_seconds: 120.0,
            start_timeout_seconds: 120.0,
            schedule: Vec::new(),
            local: LocalConfig::default(),
            kubernetes: KubernetesConfig::default(),
        }
    }
}

/// A floor for a known event (a match, a launch): at least `min_edges`
/// between two RFC 3339 times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledMinimum {
    /// Start, RFC 3339 (`2026-12-24T18:00:00Z`).
    pub from: String,
    /// End, RFC 3339.
    pub until: String,
    /// Edges wanted in between.
    pub min_edges: u32,
}

/// `[autoscale.local]`: `ferry edge` processes on this host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// The program to run; empty: this very `ferry` binary.
    pub program: String,
    /// Address the edges listen on (and are reached at).
    pub host: String,
    /// First port of the range edges listen on.
    pub first_port: u16,
    /// Last port of the range.
    pub last_port: u16,
    /// The edges' origins (`--origins`); empty: this server's own HTTP.
    pub origins: Vec<String>,
    /// Where each edge's data directory goes; empty: `<data_dir>/edges`.
    pub data_dir: String,
    /// More arguments for every edge (after `edge` and the ones above).
    pub args: Vec<String>,
    /// Extra environment for every edge (`NAME=value`).
    pub env: Vec<String>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            program: String::new(),
            host: "127.0.0.1".into(),
            first_port: 18400,
            last_port: 18499,
            origins: Vec::new(),
            data_dir: String::new(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// `[autoscale.kubernetes]`: the scale of a Deployment of edges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// The API server; empty: in-cluster (`KUBERNETES_SERVICE_HOST`).
    pub api_url: String,
    /// Namespace of the Deployment; empty: the pod's own.
    pub namespace: String,
    /// The edges' Deployment.
    pub deployment: String,
    /// Bearer token file; empty: the service account's.
    pub token_file: String,
    /// CA bundle of the API server; empty: the service account's.
    pub ca_file: String,
    /// The Lease (`coordination.k8s.io`) whose holder is the one control
    /// process that scales; empty: no Lease, this process always acts.
    pub lease: String,
    /// Seconds a Lease holds without renewal.
    pub lease_seconds: u32,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            api_url: String::new(),
            namespace: String::new(),
            deployment: "ferry-edge".into(),
            token_file: String::new(),
            ca_file: String::new(),
            lease: "ferry-autoscaler".into(),
            lease_seconds: 15,
        }
    }
}

impl AutoscaleConfig {
    /// What is wrong with these settings, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_edges > self.max_edges {
            return Err("[autoscale] min_edges is above max_edges".into());
        }
        if self.max_edges == 0 {
            return Err("[autoscale] max_edges must be at least 1".into());
        }
        if !(self.period_seconds > 0.0 && self.period_seconds <= 3600.0) {
            return Err("[autoscale] period_seconds must be within (0, 3600]".into());
        }
        if !(0.0..1.0).contains(&self.tolerance) {
            return Err("[autoscale] tolerance must be within [0, 1)".into());
        }
        let targets = [
            ("target_egress", self.target_egress),
            ("target_viewers", self.target_viewers),
            ("target_connections", self.target_connections),
            ("target_cpu", self.target_cpu),
        ];
        if let Some((name, _)) = targets
            .iter()
            .find(|(_, t)| !t.is_finite() || *t < 0.0 || *t > 1000.0)
        {
            return Err(format!("[autoscale] {name} must be within [0, 1000]"));
        }
        if self.targets().is_empty() {
            return Err(
                "[autoscale] needs at least one target (egress, viewers, connections or cpu)"
                    .into(),
            );
        }
        let seconds = [
            ("warmup_seconds", self.warmup_seconds),
            ("scale_up_window_seconds", self.scale_up_window_seconds),
            ("scale_down_window_seconds", self.scale_down_window_seconds),
            ("drain_quiet_seconds", self.drain_quiet_seconds),
            ("drain_min_seconds", self.drain_min_seconds),
            ("drain_max_seconds", self.drain_max_seconds),
            ("start_timeout_seconds", self.start_timeout_seconds),
        ];
        if let Some((name, _)) = seconds
            .iter()
            .find(|(_, s)| !s.is_finite() || *s < 0.0 || *s > 86_400.0)
        {
            return Err(format!("[autoscale] {name} must be within [0, 86400]"));
        }
        if self.drain_max_seconds < self.drain_min_seconds {
            return Err("[autoscale] drain_max_seconds is below drain_min_seconds".into());
        }
        if !matches!(self.provider.as_str(), "local" | "kubernetes") {
            return Err(format!(
                "[autoscale] provider must be `local` or `kubernetes`, not `{}`",
                self.provider
            ));
        }
        if self.local.first_port == 0 || self.local.first_port > self.local.last_port {
            return Err("[autoscale.local] first_port..last_port is not a port range".into());
        }
        for s in &self.schedule {
            s.window()?;
        }
        Ok(())
    }

    /// The metrics in use, with their targets, first to last.
    pub fn targets(&self) -> Vec<(crate::Metric, f64)> {
        let mut t = Vec::new();
        if self.edge_egress_bps > 0 && self.target_egress > 0.0 {
            t.push((crate::Metric::Egress, self.target_egress));
        }
        if self.target_viewers > 0.0 {
            t.push((crate::Metric::Viewers, self.target_viewers));
        }
        if self.target_connections > 0.0 {
            t.push((crate::Metric::Connections, self.target_connections));
        }
        if self.target_cpu > 0.0 {
            t.push((crate::Metric::Cpu, self.target_cpu));
        }
        t
    }

    /// The evaluation period.
    pub fn period(&self) -> Duration {
        Duration::from_secs_f64(self.period_seconds)
    }
}

impl ScheduledMinimum {
    /// `(from, until)` in Unix milliseconds.
    pub fn window(&self) -> Result<(i64, i64), String> {
        let ms = |s: &str| {
            humantime::parse_rfc3339_weak(s)
                .map_err(|e| format!("[[autoscale.schedule]] `{s}`: {e}"))
                .and_then(|t| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .map_err(|_| format!("[[autoscale.schedule]] `{s}` is before 1970"))
                })
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        };
        let (from, until) = (ms(&self.from)?, ms(&self.until)?);
        if until <= from {
            return Err(format!(
                "[[autoscale.schedule]] ends ({}) before it starts ({})",
                self.until, self.from
            ));
        }
        Ok((from, until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_hpas_and_valid() {
        let c = AutoscaleConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.period(), Duration::from_secs(15));
        assert_eq!(c.scale_down_window_seconds, 300.0);
        // Without an egress capacity, egress is not a metric.
        assert_eq!(
            c.targets(),
            [
                (crate::Metric::Viewers, 0.8),
                (crate::Metric::Connections, 1.0),
                (crate::Metric::Cpu, 0.7)
            ]
        );
    }

    #[test]
    fn nonsense_is_refused_with_its_name() {
        let bad = |f: fn(&mut AutoscaleConfig)| {
            let mut c = AutoscaleConfig::default();
            f(&mut c);
            c.validate().expect_err("refused")
        };
        assert!(bad(|c| c.min_edges = 20).contains("min_edges"));
        assert!(bad(|c| c.tolerance = 1.5).contains("tolerance"));
        assert!(bad(|c| c.target_cpu = f64::NAN).contains("target_cpu"));
        assert!(bad(|c| c.provider = "ec2".into()).contains("ec2"));
        assert!(
            bad(|c| {
                c.target_connections = 0.0;
                c.target_viewers = 0.0;
                c.target_cpu = 0.0;
            })
            .contains("at least one target")
        );
        assert!(
            bad(|c| c.schedule.push(ScheduledMinimum {
                from: "2026-12-24T20:00:00Z".into(),
                until: "2026-12-24T18:00:00Z".into(),
                min_edges: 3,
            }))
            .contains("before it starts")
        );
        assert!(
            bad(|c| c.schedule.push(ScheduledMinimum {
                from: "tomorrow".into(),
                until: "2026-12-24T18:00:00Z".into(),
                min_edges: 3,
            }))
            .contains("tomorrow")
        );
    }
}
