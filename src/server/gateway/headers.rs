//! Which of a request's and an answer's headers the gateway passes on.

use axum::http::{header, HeaderMap, HeaderName};

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1): not passed on. `Host`
/// and `Content-Length` are not among them: the replica client sets the one (`pool.rs`), and
/// the other is passed on where the body it describes is (see `proxy`).
pub(super) fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::TRAILER
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name == "keep-alive"
}

/// Removes the headers named `drop`. Most messages carry none: one look at the names.
pub(super) fn strip(headers: &mut HeaderMap, drop: impl Fn(&HeaderName) -> bool) {
    while let Some(name) = headers.keys().find(|k| drop(k)).cloned() {
        headers.remove(name);
    }
}
