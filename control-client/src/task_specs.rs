//! What the control plane knows of a task type without running it: its
//! name, its config's schema, how a config is checked and shown. Workers
//! implement the running part on top ([`worker::TaskType`] in the worker
//! crate); the control plane validates and lists tasks with these alone, so
//! it does not link the task implementations.

use std::collections::BTreeMap;
use std::sync::Arc;

/// One kind of task, as the API sees it.
pub trait TaskSpec: Send + Sync + 'static {
    /// The name in the API (`restream`).
    fn kind(&self) -> &'static str;
    /// One line for the UI.
    fn description(&self) -> &'static str;
    /// JSON Schema of the config: drives API validation docs and the UI form.
    fn schema(&self) -> serde_json::Value;
    /// Checks a config; returns it normalised, or what is wrong.
    fn validate(&self, config: &serde_json::Value) -> Result<serde_json::Value, String>;
    /// The config as operators may see it (secrets masked).
    fn redact(&self, config: &serde_json::Value) -> serde_json::Value;
}

/// The task types a control plane accepts, by kind.
#[derive(Clone, Default)]
pub struct TaskSpecs(Arc<BTreeMap<&'static str, Arc<dyn TaskSpec>>>);

impl TaskSpecs {
    /// The catalogue of `specs`.
    pub fn new(specs: impl IntoIterator<Item = Arc<dyn TaskSpec>>) -> Self {
        Self(Arc::new(specs.into_iter().map(|t| (t.kind(), t)).collect()))
    }

    /// The type called `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn TaskSpec>> {
        self.0.get(kind)
    }

    /// All types, by kind.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn TaskSpec>> {
        self.0.values()
    }
}
