//! The edge farm's scaling policy, sans-IO: how many edges (Kubernetes'
//! HorizontalPodAutoscaler rules, [`policy`]), and how one leaves without
//! failing a viewer ([`drain`]). Control runs it in a loop and acts through
//! a provider (local processes, a Kubernetes Deployment); here everything
//! takes the time as an argument, so the rules are tested on virtual time.

pub mod config;
pub mod drain;
pub mod policy;

pub use config::{AutoscaleConfig, KubernetesConfig, LocalConfig, ScheduledMinimum};
pub use drain::{Drains, Removal, Verdict, victims};
pub use policy::{Decision, EdgeSample, EdgeState, Figures, Metric, Policy, Reading, Reason};
