//! What the server fetches for its tenants (`delimited_files` URLs) and from where: public
//! addresses, and the special ones (loopback, private, link-local, ...) only where the operator
//! allowed them (`cortex server --allow-fetch`).
//!
//! The decision is pure (`addresses.rs`, `policy.rs`); `fetcher.rs` applies it on every hop:
//! the address a URL names is checked before the request, a name is checked as it resolves
//! (`resolver.rs`, the client's only resolver, so the connection goes to the address that
//! was checked), and each redirect is checked the same way before it is followed.

mod addresses;
mod fetcher;
mod policy;
mod resolver;

pub use addresses::Special;
pub use fetcher::Fetcher;
pub use policy::{Allowed, FetchPolicy, Refusal};
