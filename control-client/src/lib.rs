//! What a node needs of Ferry's control plane, without the control plane:
//! the API's shared types ([`types`]), the lease contract workers run on
//! ([`leases`]), publish authorisation with its cache and lockout ([`auth`]),
//! and a typed HTTP client ([`ControlClient`]). An origin, worker or edge
//! links this crate, not SQLite or the API server.

pub mod auth;
mod client;
pub mod leases;
pub mod task_specs;
pub mod types;

pub use auth::{ControlAuth, KeyLookup};
pub use client::{ClientError, ControlClient};
pub use leases::{LeaseError, LeaseFuture, Leases};
pub use task_specs::{TaskSpec, TaskSpecs};
