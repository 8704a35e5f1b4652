//! What the autoscaler acts through: something that can add edges to the
//! farm and remove a given one.

use std::future::Future;
use std::pin::Pin;

/// A provider's future (boxed: providers are chosen at run time).
pub type ProviderFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;

/// Why a provider could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// No port (local) or no replica slot left.
    #[error("no room for another edge: {0}")]
    Exhausted(String),
    /// Starting or stopping a process failed.
    #[error("process: {0}")]
    Process(#[from] std::io::Error),
    /// The orchestrator's API refused or failed.
    #[error("{0}")]
    Api(String),
    /// The provider's settings are unusable.
    #[error("configuration: {0}")]
    Config(String),
}

/// Adds and removes edges. The autoscaler decides which and when; a
/// provider only carries it out.
pub trait Provider: Send + Sync {
    /// Its name (`local`, `kubernetes`), for the API and logs.
    fn name(&self) -> &'static str;

    /// Asks for `n` more edges. Returns the node ids they will report under
    /// where the provider knows them (`local`), or fewer (`kubernetes`:
    /// pods are named by the orchestrator); the autoscaler counts the rest
    /// as starting until unknown edges report.
    fn add(&self, n: u32) -> ProviderFuture<'_, Vec<String>>;

    /// Removes the drained edge `id` from the farm for good.
    fn remove<'a>(&'a self, id: &'a str) -> ProviderFuture<'a, ()>;

    /// Whether edge `id` is one this provider can remove (edges started by
    /// hand are never removed by the autoscaler).
    fn owns(&self, id: &str) -> bool;

    /// Whether this process is the one that scales (among several control
    /// processes, the holder of a lease); asked before every evaluation.
    fn leader(&self) -> ProviderFuture<'_, bool> {
        Box::pin(async { Ok(true) })
    }
}
