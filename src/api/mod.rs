//! Request and response types shared by the client and the server: the wire contract.
//!
//! Nothing here does IO. The server converts its own types into these at the edge
//! (`server/wire.rs`, whose tests pin the JSON of an API's configuration).

mod apis;
mod bazaar;
mod config;
mod error;
mod health;
mod identity;
mod jobs;
mod runtime_file;

pub use apis::*;
pub use bazaar::*;
pub use config::*;
pub use error::ErrorBody;
pub use health::{EngineInfo, EngineNode, Health, Isolation};
pub use identity::*;
pub use jobs::*;
pub use runtime_file::RuntimeFile;
