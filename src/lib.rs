//! The `ferry` binary's library half: configuration and the wiring of every role
//! into one process. Kept as a library so integration tests run the real server
//! in-process and read its bound addresses.

pub mod allocator;
pub mod config;
mod control_role;
pub mod director_role;
pub mod edge_role;
mod http;
mod http_serve;
mod keys;
pub mod node;
mod origin_follower;
mod relay_role;
mod rtmp_threads;
mod rtmps;
mod running;
pub mod serve;
mod services;
mod state_files;
pub mod stream_settings;
mod ui;
