//! The HTTP surface: control API (`/api/v2/...`), health, and the gateway as the fallback.

mod access;
mod access_lost;
mod api_jobs;
mod apis;
mod apis_deploy;
mod bazaar;
mod bundles;
mod info;
mod job_logs;
pub(crate) mod jobs;
mod logs;
mod merged_logs;
mod metrics;
mod project_check;
mod queue;
mod refresh;
mod teams;
mod tokens;
mod users;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;

use super::json_errors;
use super::limits::{MAX_BUNDLE_BYTES, MAX_CONTROL_BYTES, MAX_PREDICTION_BYTES};
use super::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(info::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v2/info", get(info::info))
        .route("/api/v2/apis", get(apis::list).post(apis_deploy::deploy))
        .route(
            "/api/v2/apis/{name}",
            get(apis::get_one).delete(apis::delete),
        )
        .route("/api/v2/apis/{name}/logs", get(logs::logs))
        .route("/api/v2/apis/{name}/refresh", post(refresh::refresh))
        .route("/api/v2/apis/{name}/jobs", get(api_jobs::list))
        .route(
            "/api/v2/apis/{name}/jobs/{job_id}",
            get(api_jobs::get_one).delete(api_jobs::stop),
        )
        .route(
            "/api/v2/apis/{name}/jobs/{job_id}/logs",
            get(job_logs::job_logs),
        )
        .route("/api/v2/apis/{name}/access", put(access::set_access))
        .route("/api/v2/users", get(users::list).post(users::create))
        .route("/api/v2/users/{username}", delete(users::delete))
        .route("/api/v2/teams", get(teams::list).post(teams::create))
        .route("/api/v2/teams/{team}", delete(teams::delete))
        .route(
            "/api/v2/teams/{team}/members/{username}",
            put(teams::set_member).delete(teams::remove_member),
        )
        .route("/api/v2/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v2/tokens/{id}", delete(tokens::revoke))
        // Model Bazaar v2: the static internal routes first, so no model id shadows them.
        .route(
            "/api/v2/deploy/status-internal",
            get(bazaar::status_internal),
        )
        .route("/api/v2/deploy/update-status", post(bazaar::update_status))
        .route(
            "/api/v2/train/update-status",
            post(bazaar::train_update_status),
        )
        .route("/api/v2/train/{model_id}/status", get(bazaar::train_status))
        .route(
            "/api/v2/model/{model_id}/permissions",
            get(bazaar::permissions),
        )
        .route("/api/v2/deploy/log", get(bazaar::log).post(bazaar::log))
        .route(
            "/api/v2/deploy/{model_id}",
            post(bazaar::deploy).delete(bazaar::undeploy),
        )
        .route(
            "/api/v2/deploy/{model_id}/status",
            get(bazaar::deploy_status),
        )
        .route("/api/v2/deploy/{model_id}/logs", get(bazaar::deploy_logs))
        .route(
            "/api/v2/deploy/{model_id}/status-internal",
            get(bazaar::status_internal_of),
        )
        .route("/api/v2/deploy/{model_id}/save", post(bazaar::save))
        .route("/api/v2/queues/{job_id}/receive", post(queue::receive))
        .route("/api/v2/queues/{job_id}/ack", post(queue::ack))
        .route("/api/v2/queues/{job_id}/nack", post(queue::nack))
        .route("/api/v2/queues/{job_id}/extend", post(queue::extend))
        // Every route above reads its body whole; the uploads below stream theirs to disk.
        .layer(DefaultBodyLimit::max(MAX_CONTROL_BYTES))
        .route(
            "/api/v2/bundles/{sha256}",
            put(bundles::put_bundle)
                .head(bundles::head_bundle)
                .layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES)),
        )
        .route(
            "/api/v2/deploy/{model_id}/files",
            put(bazaar::save_files).layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES)),
        )
        .method_not_allowed_fallback(json_errors::method_not_allowed)
        // Only the routes above: the gateway (added after) passes replicas' answers through.
        .layer(axum::middleware::map_response(json_errors::ensure_json))
        .fallback(jobs::fallback)
        .layer(DefaultBodyLimit::max(MAX_PREDICTION_BYTES))
        .with_state(state)
}

/// 403 unless `caller` has at least `needed` on the model of `row`.
pub(crate) fn require(
    caller: &crate::server::tokens::Identity,
    row: &crate::store::ModelRow,
    needed: crate::server::access::Level,
) -> Result<(), super::error::ApiError> {
    use crate::server::access::{level, ModelAccess};
    let level = level(&caller.caller(), &ModelAccess::from(row));
    if level >= needed {
        return Ok(());
    }
    if let Some(why) = crate::server::access::out_of_scope(&caller.caller(), &row.id, &row.name) {
        return Err(super::error::ApiError::Forbidden(why));
    }
    Err(super::error::ApiError::Forbidden(format!(
        "user {} does not have the permission this needs on api {} (model {}): it needs {}, and has {}",
        caller.user.username,
        row.name,
        row.id,
        needed.as_str(),
        level.as_str()
    )))
}

/// What a JSON body starting with `first` is, for an error message.
fn json_shape(first: Option<u8>) -> &'static str {
    match first {
        None => "an empty body",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'-' | b'0'..=b'9') => "a number",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(_) => "something that is not JSON",
    }
}

/// Parses a JSON object body into `T`, answering 400 with serde's explanation when it does not fit,
/// naming the field at fault.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, super::error::ApiError> {
    let bad = |why: String| {
        super::error::ApiError::BadRequest(format!("the request body is not valid: {why}"))
    };
    // Every body is an object: serde would take `[]` for a struct whose fields have defaults.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(bad(format!(
            "expected a JSON object ({{...}}), got {}",
            json_shape(first.copied())
        )));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            bad(e.inner().to_string())
        } else {
            bad(format!("{path}: {}", e.inner()))
        }
    })?;
    de.end().map_err(|e| bad(e.to_string()))?;
    Ok(value)
}
