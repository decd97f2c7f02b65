//! cortex: deploy machine-learning model APIs from declarative YAML and run them.
//!
//! See ARCHITECTURE.md for the map of this crate.

pub mod api;
pub mod atomic_file;
pub mod autoscale;
pub mod batch;
pub mod cli;
pub mod client;
pub mod clock;
pub mod engine;
pub mod free_space;
pub mod open_beneath;
pub mod runtime;
pub mod server;
pub mod spec;
pub mod store;
pub mod tail;

/// The version of this binary; the CLI and the server report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
