//! The prediction gateway: `POST /<api>` (or the API's `networking.endpoint`) is proxied to a
//! ready replica over a pooled keep-alive connection; `GET` answers a usage message. As Model
//! Bazaar routes its deployments, any request under `/<model_id>/` or `/<deployment_name>/`
//! of a RealtimeAPI goes to a replica too, with that prefix taken off (`GET /<id>/health` is
//! the replica's `GET /health`), under the same access rules and admission.
//! Admission (`admission`) decides when a request may go: a replica with room, a bounded wait,
//! or a refusal (503 `not_ready` / `overloaded`); `networking.timeout` bounds the whole request
//! (504), `networking.max_request_size` its body (413).
//!
//! Hot path rules: no database, no lock held across an await, replica picked in O(1).

use std::sync::Arc;

use axum::http::{Method, Request, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;

use super::access::{self, Access, Level};
use super::auth::identity_from_headers;
use super::error::{error_response, ApiError};
use super::live_api::LiveApi;
use super::state::AppState;
use forward::proxy;
pub use forward::ClientBody;
use refusals::{not_found, unreadable_target};
use route::{api_path, Route};

pub use answer::Answer;

mod answer;
mod forward;
mod forwarding;
mod headers;
mod refusals;
mod route;

/// Paths under `/api/v<n>/` belong to the control API (no API may take them).
pub(crate) fn is_control_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/v") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(rest.as_bytes().get(digits), None | Some(b'/'))
}

/// A prediction needs a user token with Read on the model (see [`check_access`]).
pub(crate) async fn check_caller(
    state: &AppState,
    api: &LiveApi,
    headers: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    let identity = identity_from_headers(state, headers).await?;
    let level = access::level(&identity.caller(), &api.access());
    if level < Level::Read {
        if let Some(why) = access::out_of_scope(&identity.caller(), &api.model_id, &api.spec.name) {
            return Err(ApiError::Forbidden(why));
        }
        return Err(ApiError::Forbidden(format!(
            "user {} may not call {}: it needs read access to the model (ask its owner, e.g. `cortex access {} --access protected --team <team>`)",
            identity.user.username, api.spec.name, api.spec.name
        )));
    }
    Ok(())
}

/// Answers a request the router's fallback gave to the gateway; `found` is the API deployed at
/// its path ([`crate::server::routes::jobs::target`] looked it up).
///
/// A request's body comes as it was read (hyper's, on a connection thread): it is boxed only
/// on the paths that read it here.
pub fn answer<B: ClientBody>(
    state: &Arc<AppState>,
    req: Request<B>,
    found: Option<Arc<LiveApi>>,
) -> Answer {
    if let Some(api) = found {
        return predict(state, api, req);
    }
    // Messages name the path as it was given (an API's path is matched without a trailing
    // slash).
    let given = req.uri().path().to_string();
    if is_control_path(api_path(&given)) {
        let slash = if given.len() > 1 && given.ends_with('/') {
            " (its routes take no trailing slash)"
        } else {
            ""
        };
        return Answer::now(error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "{} {given} is not a route of the control API{slash}; see the README for its routes",
                req.method()
            ),
        ));
    }
    if let Some((segment, rest)) = prefix_of(&given) {
        if let Some(api) = state.deployments.by_prefix(segment) {
            let route = Route::Prefix(segment.to_string());
            let target = match req.uri().query() {
                Some(q) => Uri::try_from(format!("{rest}?{q}")),
                None => Uri::try_from(rest),
            };
            let Ok(target) = target else {
                return Answer::now(unreadable_target(&given));
            };
            return checked(state, api, req, |state, api, req| {
                proxy(state, api, route, target, req)
            });
        }
    }
    Answer::now(not_found(&given))
}

/// `/<segment>/<rest>`: the first segment and the rest (from its `/`), when there is a rest.
fn prefix_of(path: &str) -> Option<(&str, &str)> {
    let tail = path.strip_prefix('/')?;
    let slash = tail.find('/')?;
    let (segment, rest) = tail.split_at(slash);
    (!segment.is_empty()).then_some((segment, rest))
}

/// `then`, once the caller may call `api`: on a server beyond loopback, a non-public API
/// needs a caller with Read on it (see [`check_caller`]), and a token presented is checked
/// everywhere. Goes on at once where no token is needed (on loopback, or for a public API)
/// and none is sent; otherwise after the caller's token is checked.
fn checked<B: ClientBody>(
    state: &Arc<AppState>,
    api: Arc<LiveApi>,
    req: Request<B>,
    then: impl FnOnce(&Arc<AppState>, Arc<LiveApi>, Request<B>) -> Answer + Send + 'static,
) -> Answer {
    let open = state.anonymous_ok || api.access().access == Access::Public;
    if crate::server::auth::anonymous(req.headers(), open) {
        return then(state, api, req);
    }
    let state = state.clone();
    Answer::later(async move {
        if let Err(e) = check_caller(&state, &api, req.headers()).await {
            return e.into_response();
        }
        then(&state, api, req).await
    })
}

/// A request to an API's path: `POST` predicts (through a TrafficSplitter's choice, for a
/// splitter), `GET` says how (an onnx API's replica answers it, with its model's input
/// signature, as cortex did).
fn predict<B: ClientBody>(state: &Arc<AppState>, api: Arc<LiveApi>, req: Request<B>) -> Answer {
    checked(state, api, req, |state, api, req| {
        let replica_answers_get = api
            .spec
            .predictor
            .as_ref()
            .is_some_and(|p| p.kind == crate::spec::PredictorType::Onnx);
        match *req.method() {
            Method::POST => {}
            Method::GET if replica_answers_get => {}
            Method::GET => {
                return Answer::now(Json(serde_json::json!({
                    "message": "make a prediction by sending a post request to this endpoint with a json payload"
                }))
                .into_response())
            }
            _ => {
                return Answer::now(error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!(
                        "{} answers POST (predict) and GET (usage); {} is not supported",
                        api.spec.name,
                        req.method()
                    ),
                ))
            }
        }
        // A TrafficSplitter passes the request to one of its apis, chosen by weight.
        let Some(splitter) = &api.splitter else {
            return at_root(state, api, Route::Path, req);
        };
        let name = &api.spec.name;
        let Some(chosen) = splitter.pick().map(str::to_string) else {
            return Answer::now(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                format!("traffic splitter {name} gives no api any weight; change its weights"),
            ));
        };
        let route = Route::Split {
            splitter: name.clone(),
            chosen,
        };
        let Some(chosen) = route.resolve(state, req.uri()) else {
            return Answer::now(route.gone(req.uri()));
        };
        // A splitter's caller needs what a direct caller of the chosen api needs.
        checked(state, chosen, req, |state, chosen, req| {
            at_root(state, chosen, route, req)
        })
    })
}

/// Passes `req` on to `api`'s replica, which serves the API at its root, with the request's
/// query.
fn at_root<B: ClientBody>(
    state: &Arc<AppState>,
    api: Arc<LiveApi>,
    route: Route,
    req: Request<B>,
) -> Answer {
    let target = match req.uri().query() {
        None => Uri::from_static("/"),
        Some(q) => match Uri::try_from(format!("/?{q}")) {
            Ok(target) => target,
            Err(_) => return Answer::now(unreadable_target(&req.uri().to_string())),
        },
    };
    proxy(state, api, route, target, req)
}

#[cfg(test)]
mod tests {
    use super::is_control_path;

    #[test]
    fn control_paths_are_the_versioned_api() {
        for path in ["/api/v2/deploy/x", "/api/v2", "/api/v10/x"] {
            assert!(is_control_path(path), "{path}");
        }
        for path in [
            "/api",
            "/api/v",
            "/api/vx/y",
            "/apis/v2",
            "/iris",
            "/api/v2x",
        ] {
            assert!(!is_control_path(path), "{path}");
        }
    }
}
