//! Saving a deployed model: a new model with the base's configuration and files, whose update
//! token uploads the saved files over them and marks it complete.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;

use super::{body_or_default, empty, job_model, load_model, model_for, model_id};
use crate::api::{SaveAnswer, SaveRequest};
use crate::server::access::Level;
use crate::server::auth::{AuthCaller, JobAuth};
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::server::tokens::Identity;
use crate::server::versions;
use crate::store::saved_models;
use crate::store::{models, ModelRow};

/// How long an update token lives (`CORTEX_UPDATE_TOKEN_SECS` changes it).
fn update_token_lifetime() -> i64 {
    std::env::var("CORTEX_UPDATE_TOKEN_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3600)
}

/// Who asks to save a model: a user with Read on it, or the job token of one of its
/// deployments (the shim's `cortex_runtime.save_model`), which saves as the model's owner.
pub enum Saver {
    User(Identity),
    /// The job token of a deployment of this model.
    Job(String),
}

impl axum::extract::FromRequestParts<AppState> for Saver {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match AuthCaller::from_request_parts(parts, state).await {
            Ok(AuthCaller(identity)) => Ok(Saver::User(identity)),
            Err(user_error) => match JobAuth::from_request_parts(parts, state).await {
                Ok(JobAuth(job)) if job.deployment.is_some() => Ok(Saver::Job(job.model_id)),
                _ => Err(user_error),
            },
        }
    }
}

/// `POST /api/v2/deploy/{model_id}/save` (Read, or a job token of that model): a new private
/// model with the base's spec and bundle, not deployable until its update token marks it
/// complete. Answers `{model_id, update_token}`.
pub async fn save(
    State(state): State<AppState>,
    saver: Saver,
    Path(raw_id): Path<String>,
    body: Bytes,
) -> Result<Json<SaveAnswer>, ApiError> {
    // Who saves without being the base's owner gets its configuration and files, not its
    // secrets: neither the predictor's `env` nor the project's `.env`.
    let (base, owner, inherits_env) = match &saver {
        Saver::Job(model) => {
            let id = model_id(&raw_id)?;
            if *model != id {
                return Err(ApiError::Forbidden(format!(
                    "this job token belongs to model {model}, not to model {id}"
                )));
            }
            let base = load_model(&state, &id).await?;
            let owner = base.owner_id.clone();
            (base, owner, true)
        }
        Saver::User(caller) => {
            let base = model_for(&state, caller, &raw_id, Level::Read).await?;
            let owns = crate::server::routes::require(caller, &base, Level::Owner).is_ok();
            (base, caller.user.id.clone(), owns)
        }
    };
    let req: SaveRequest = body_or_default(&body)?;
    let given = req.model_name;
    crate::spec::check_given_name(&given)
        .map_err(|e| ApiError::Unprocessable(format!("model_name: {e}")))?;
    let mut spec: crate::spec::ApiSpec = serde_json::from_str(&base.spec_json)
        .map_err(|e| ApiError::Internal(format!("the spec of {} is unreadable: {e}", base.name)))?;
    if let (false, Some(predictor)) = (inherits_env, spec.predictor.as_mut()) {
        predictor.env.clear();
    }
    let _changing = state.changes.lock().await;
    let rows = state.store.call(|c| models::list(c)).await?;
    if let Some(other) = rows
        .iter()
        .find(|o| o.name == given || o.given_name.as_deref() == Some(given.as_str()))
    {
        return Err(ApiError::Conflict(format!(
            "a model named {given:?} already exists (model {}); choose another model_name",
            other.id
        )));
    }
    // A name that is not a route segment is routed by one derived from it (see the README).
    let taken = |name: &str| {
        let path = format!("/{name}");
        rows.iter()
            .any(|o| o.name == name || versions::paths_of(o).contains(&path))
    };
    let salt = uuid::Uuid::new_v4().simple().to_string();
    let name = crate::spec::route_name(&given, &salt, taken);
    if taken(&name) {
        return Err(ApiError::Conflict(format!(
            "/{name} already serves another api; choose another model_name"
        )));
    }
    spec.name = name.clone();
    spec.networking.endpoint = format!("/{name}");
    let spec_json = serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    let given_name = (given != name).then_some(given);
    let expires_at = crate::clock::now() + update_token_lifetime();
    let answer = state
        .store
        .call(move |c| {
            let saved = saved_models::create_saved(
                c,
                &base,
                &name,
                given_name.as_deref(),
                &owner,
                &spec_json,
                inherits_env,
            )?;
            let update_token = crate::store::users::issue_update_token(c, &saved.id, expires_at)?;
            Ok(SaveAnswer {
                model_id: saved.id,
                update_token,
            })
        })
        .await?;
    Ok(Json(answer))
}

/// `PUT /api/v2/deploy/{model_id}/files` (the saved model's update token): a tar.gz of the
/// saved files, unpacked over the base model's bundle when the model runs.
pub async fn save_files(
    State(state): State<AppState>,
    job: JobAuth,
    Path(raw_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let row = job_model(&state, &job, Some(&raw_id)).await?;
    if job.0.deployment.is_some() || !row.save_pending {
        return Err(ApiError::Forbidden(format!(
            "only the update token of a model being saved may upload its files; model {} is not being saved",
            row.id
        )));
    }
    state.disk.check()?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let size = body.len() as u64;
    let (bundles, s) = (state.bundles.clone(), sha.clone());
    let under = layers(&row);
    // Refused here (422), not at deploy: archives that cannot be unpacked safely, alone or
    // over what they go over.
    tokio::task::spawn_blocking(move || {
        let under: Vec<&str> = under.iter().map(String::as_str).collect();
        bundles.write_over(&s, &body, &under)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| match e {
        crate::store::StoreError::Conflict(m) => ApiError::Unprocessable(m),
        other => other.into(),
    })?;
    // The saved model's owner sent these files (through its update token).
    let (bundles, id, owner) = (state.bundles.clone(), row.id.clone(), row.owner_id.clone());
    state
        .store
        .call(move |c| {
            bundles.record(c, &sha, size)?;
            crate::store::bundle_uploaders::add(c, &sha, &owner)?;
            saved_models::set_overlay(c, &id, &sha)
        })
        .await?;
    Ok(empty())
}

/// The bundles a model's project is made of, the bottom one first: its bundle, then the files
/// saved over it.
fn layers(row: &ModelRow) -> Vec<String> {
    std::iter::once(row.bundle_sha256.clone())
        .chain(
            row.overlay_sha256
                .iter()
                .flat_map(|o| o.split(',').map(String::from)),
        )
        .collect()
}
