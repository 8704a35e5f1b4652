//! Task types: what can be attached to a stream and run by a worker while the
//! stream is live. Adding one is one module implementing [`TaskType`] plus a
//! line in [`TaskTypes::builtin`].

pub mod restream;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use control_client::{TaskSpec, TaskSpecs};
use media_core::Hub;
use tokio_util::sync::CancellationToken;

/// Where a task reads its stream from.
#[derive(Clone)]
pub enum Media {
    /// The hub of this process (a worker inside `ferry serve`).
    Hub(Hub),
    /// An origin's RTMP server, played as `APP/STREAM` (a `ferry worker`).
    Origin {
        /// The origin's RTMP address.
        addr: std::net::SocketAddr,
        /// Its RTMP application (`live`).
        app: String,
    },
}

/// What a running task gets.
#[derive(Clone)]
pub struct TaskContext {
    /// Where the stream comes from.
    pub media: Media,
    /// The stream the task belongs to.
    pub stream: String,
    /// Cancelled when the task must stop (stream ended, lease lost, disabled).
    pub cancel: CancellationToken,
}

/// A task run: `Ok` when it ended by itself (the stream ended or it was
/// cancelled), `Err(why)` when it failed and should be restarted.
pub type TaskRun = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One kind of task: what the control plane knows of it ([`TaskSpec`]) and
/// how a worker runs it.
pub trait TaskType: TaskSpec {
    /// Runs the task until it ends or fails.
    fn run(&self, ctx: TaskContext, config: serde_json::Value) -> TaskRun;
}

/// The task types this build knows, by kind.
#[derive(Clone)]
pub struct TaskTypes(Arc<BTreeMap<&'static str, Arc<dyn TaskType>>>);

impl TaskTypes {
    /// Every built-in task type.
    pub fn builtin() -> Self {
        let types: Vec<Arc<dyn TaskType>> = vec![Arc::new(restream::Restream)];
        Self(Arc::new(types.into_iter().map(|t| (t.kind(), t)).collect()))
    }

    /// The type called `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn TaskType>> {
        self.0.get(kind)
    }

    /// What the control plane needs of these types.
    pub fn specs(&self) -> TaskSpecs {
        TaskSpecs::new(self.0.values().cloned().map(|t| -> Arc<dyn TaskSpec> { t }))
    }
}
