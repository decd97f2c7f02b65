//! The gateway's own answers when a prediction cannot be passed on or answered: what the
//! client should change, with an honest status.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::Response;

use crate::server::error::error_response;
use crate::server::live_api::LiveApi;

/// 400: what the request names cannot be passed on.
pub(super) fn unreadable_target(given: &str) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("{given} cannot be passed on to a replica: it is not a valid path and query"),
    )
}

/// 404: nothing is deployed at `given`.
pub(super) fn not_found(given: &str) -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", not_found_text(given))
}

/// What a 404 says: which apis there are to see, or, for the server's own API behind a path
/// (`/iris/api/v2/apis`: a CLI whose endpoint was given as an api's url), which endpoint to
/// use instead.
fn not_found_text(given: &str) -> String {
    let path = given.split('?').next().unwrap_or(given);
    match path.find("/api/v2/") {
        Some(at) if at > 0 => {
            let extra = &path[..at];
            format!(
                "no api is deployed at {given}: the server's own API is at /api/v2/, so whatever sent this has an endpoint with {extra:?} too many; set its endpoint to the server's base url, without {extra:?}"
            )
        }
        _ => format!("no api is deployed at {given}; run `cortex get` to see the deployed apis"),
    }
}

/// 413: the body is over `api`'s `networking.max_request_size`.
pub(super) fn too_large(api: &LiveApi) -> Response {
    let (name, limit) = (&api.spec.name, &api.spec.networking.max_request_size);
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the request body is larger than {name}'s limit of {limit}; send less, or raise networking.max_request_size in its cortex.yaml"
        ),
    )
}

/// The client's body failed while it was being passed on (it ended early, or its connection
/// went): the request's fault, not the replica's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct ClientBodyFailed(pub(super) axum::Error);

/// Whether `e` came of the client's body failing ([`ClientBodyFailed`] among its causes).
pub(super) fn client_body_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| e.is::<ClientBodyFailed>())
}

/// 400: the client's body ended before it was all there.
pub(super) fn unreadable_body(e: impl std::fmt::Display) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("the request body could not be read: {e}"),
    )
}

/// 504: `api` did not answer within its `networking.timeout`.
pub(super) fn timed_out(api: &LiveApi, timeout: Duration, started: Instant) -> Response {
    api.metrics.record(504, started.elapsed());
    let name = &api.spec.name;
    error_response(
        StatusCode::GATEWAY_TIMEOUT,
        "timed_out",
        format!(
            "{name} did not answer within its timeout of {}s; raise networking.timeout in its cortex.yaml, or see `cortex logs {name}`",
            timeout.as_secs()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::not_found_text;

    #[test]
    fn the_servers_own_api_behind_a_path_names_the_path_too_many() {
        let text = not_found_text("/iris/api/v2/apis?x=1");
        assert!(text.contains("\"/iris\" too many"), "{text}");
        let text = not_found_text("/iris");
        assert!(text.contains("run `cortex get`"), "{text}");
    }
}
