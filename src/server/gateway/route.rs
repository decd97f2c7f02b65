//! What a prediction is routed by: an API's path, a TrafficSplitter's choice, or a Model
//! Bazaar prefix; routed again once a body read whole is in.

use std::sync::Arc;

use axum::http::{StatusCode, Uri};
use axum::response::Response;

use super::refusals::not_found;
use crate::server::error::error_response;
use crate::server::live_api::LiveApi;
use crate::server::state::AppState;

/// The path an API is deployed at, as `given` names it (without a trailing slash).
pub(super) fn api_path(given: &str) -> &str {
    match given.trim_end_matches('/') {
        "" => "/",
        path => path,
    }
}

/// What a request is routed by, again once its body is in (a deploy may have replaced what
/// served it meanwhile).
pub(super) enum Route {
    /// An API's path: the request's.
    Path,
    /// The API a TrafficSplitter chose.
    Split { splitter: String, chosen: String },
    /// `/<model_id>/...` or `/<deployment_name>/...`.
    Prefix(String),
}

impl Route {
    /// What serves the route of a request for `uri` now.
    pub(super) fn resolve(&self, state: &AppState, uri: &Uri) -> Option<Arc<LiveApi>> {
        match self {
            Route::Path => state.deployments.by_path(api_path(uri.path())),
            Route::Split { chosen, .. } => {
                state.deployments.get(chosen).filter(|a| a.is_realtime())
            }
            Route::Prefix(segment) => state.deployments.by_prefix(segment),
        }
    }

    /// The answer when nothing serves the route any more.
    pub(super) fn gone(&self, uri: &Uri) -> Response {
        match self {
            Route::Path => not_found(api_path(uri.path())),
            Route::Prefix(segment) => not_found(&format!("/{segment}/")),
            Route::Split { splitter, chosen } => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                format!("{chosen}, one of traffic splitter {splitter}'s apis, is not deployed; deploy it, or change the splitter's apis"),
            ),
        }
    }
}
