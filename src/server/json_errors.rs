//! Makes every control-route error a `{"kind", "message"}` JSON body, including the ones axum
//! produces itself (405 without a body, plain-text extractor rejections, 413 from body limits).
//! Not applied to the gateway: a replica's own responses pass through untouched.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::error_response;

/// Bodies longer than this are not copied into the message.
const MAX_DETAIL: usize = 1024;

pub async fn ensure_json(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), MAX_DETAIL)
        .await
        .unwrap_or_default();
    let detail = String::from_utf8_lossy(&body).trim().to_string();
    let (kind, message) = describe(status, &detail);
    error_response(status, kind, message)
}

fn describe(status: StatusCode, detail: &str) -> (&'static str, String) {
    let with_detail = |sentence: &str| {
        if detail.is_empty() {
            sentence.to_string()
        } else {
            format!("{sentence}: {}", lower_first(detail))
        }
    };
    match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not answer that method; see the API reference in README.md"
                .to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            with_detail("the request body is too large (bundles and saved files up to 512 MiB, predictions up to 64 MiB, job submissions up to 10 MiB, other control requests up to 1 MiB)"),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            with_detail("send the body as application/json"),
        ),
        s if s.is_client_error() => ("bad_request", with_detail("the request is not valid")),
        _ => ("internal", with_detail("the server failed")),
    }
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}

/// The answer for a control route asked with a method it does not take.
pub async fn method_not_allowed() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, Body::empty()).into_response()
}
