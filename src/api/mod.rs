//! Request and response types shared by the client and the server: the wire contract.
//!
//! Nothing here does IO. Tests in `tests/it/wire.rs` pin the JSON shapes.

mod apis;
mod config;
mod error;
mod health;
mod runtime_file;

pub use apis::*;
pub use config::*;
pub use error::ErrorBody;
pub use health::Health;
pub use runtime_file::RuntimeFile;
