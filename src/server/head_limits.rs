//! The limits on a request's head that the server answers itself with `{"kind","message"}`,
//! on every route (the gateway's included: the answer is the server's, not a replica's). They
//! are well below hyper's own, which answer a bare status with no body (see `limits.rs`), so a
//! head hyper could parse but that is too large still gets an answer that says why.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::error::error_response;
use super::limits::{MAX_HEADER_BYTES, MAX_URI_BYTES};

pub async fn check(req: Request, next: Next) -> Response {
    let uri = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri > MAX_URI_BYTES {
        return error_response(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!(
                "the request's path and query are {uri} bytes, more than the limit of {MAX_URI_BYTES}; send the data in the body"
            ),
        );
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        return error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request's header fields are {headers} bytes, more than the limit of {MAX_HEADER_BYTES}"
            ),
        );
    }
    next.run(req).await
}
