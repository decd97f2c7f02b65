//! The Model Bazaar v2 deployment API (`/api/v2/deploy/...`), as its documentation writes it:
//! deploy, undeploy, status and logs for users with the right permission on the model, and
//! the internal routes a deployment's replicas call with their job token.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::parse_json;
use crate::api::{
    DeployParams, DeploymentStatus, JobLog, ReplicaOutput, SaveAnswer, SaveRequest, UpdateStatus,
};
use crate::server::access::Level;
use crate::server::auth::{AuthCaller, JobAuth};
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::server::tokens::Identity;
use crate::server::{status, versions};
use crate::store::{deploy_logs, models, DeployStatus, ModelRow};

/// `{}`: what the Model Bazaar API answers when there is nothing to say.
fn empty() -> Json<Value> {
    Json(json!({}))
}

/// The model id of a path: a UUID (400 otherwise).
fn model_id(raw: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.to_string())
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{raw:?} is not a model id; model ids are UUIDs (`cortex get <api> -o json` shows an api's model_id)"
            ))
        })
}

async fn load_model(state: &AppState, id: &str) -> Result<ModelRow, ApiError> {
    let id_ = id.to_string();
    state
        .store
        .call(move |c| models::get(c, &id_))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("model {id} does not exist")))
}

/// The model of the path, when the caller has at least `needed` on it (403 otherwise).
async fn model_for(
    state: &AppState,
    caller: &Identity,
    raw_id: &str,
    needed: Level,
) -> Result<ModelRow, ApiError> {
    let id = model_id(raw_id)?;
    let row = load_model(state, &id).await?;
    super::require(caller, &row, needed)?;
    Ok(row)
}

/// `POST /api/v2/deploy/{model_id}` (Owner).
pub async fn deploy(
    State(state): State<AppState>,
    AuthCaller(user): AuthCaller,
    Path(raw_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let params: DeployParams = if body.iter().all(u8::is_ascii_whitespace) {
        DeployParams::default()
    } else {
        parse_json(&body)?
    };
    let row = model_for(&state, &user, &raw_id, Level::Owner).await?;
    versions::check_params(&params).map_err(ApiError::Unprocessable)?;
    state.disk.check()?;
    if row.kind != crate::spec::ApiKind::RealtimeAPI.as_str() {
        return Err(ApiError::Unprocessable(format!(
            "{} is a {}; only RealtimeAPIs can be deployed here",
            row.name, row.kind
        )));
    }
    let _changing = state.changes.lock().await;
    let row = load_model(&state, &row.id).await?;
    if row.save_pending {
        return Err(ApiError::Unprocessable(format!(
            "model {} ({}) is still being saved: its files are not complete (its update token marks it complete)",
            row.id, row.name
        )));
    }
    if let Some(name) = &params.deployment_name {
        let path = format!("/{name}");
        let others = state.store.call(|c| models::list(c)).await?;
        if let Some(other) = others
            .iter()
            .find(|o| o.id != row.id && versions::paths_of(o).contains(&path))
        {
            return Err(ApiError::Conflict(format!(
                "deployment_name {name:?}: {path} already serves model {} ({}); choose another name",
                other.id, other.name
            )));
        }
    }
    let params_json =
        serde_json::to_string(&params).map_err(|e| ApiError::Internal(e.to_string()))?;
    let (id, name) = (row.id.clone(), params.deployment_name.clone());
    state
        .store
        .call(move |c| models::set_deploy_params(c, &id, name.as_deref(), &params_json))
        .await?;
    let row = load_model(&state, &row.id).await?;
    let spec = versions::spec_of(&row)?;
    let hash = versions::version_hash(
        &spec,
        row.deployment_name.as_deref(),
        &versions::bundle_key(&row),
    );
    let running = state.deployments.get(&row.name);
    let serving_this = running.as_ref().is_some_and(|live| live.spec_hash == hash);
    if row.deploy_status.is_active() && serving_this {
        return Ok(empty());
    }
    if !row.deploy_status.is_active() && !running.as_ref().is_some_and(|live| live.is_ready()) {
        // Failed or stopped, and nothing of it answers: start afresh rather than keep what
        // crash-loops. (A version that still serves keeps serving until the new one is ready.)
        state.deployments.remove(&row.name).await;
    }
    let id = row.id.clone();
    let h = hash.clone();
    state
        .store
        .call(move |c| models::set_version(c, &id, &h))
        .await?;
    let row = load_model(&state, &row.id).await?;
    versions::start_or_fail(&state.bundles, &state.deployments, &state.store, &row).await?;
    Ok(empty())
}

/// `DELETE /api/v2/deploy/{model_id}` (Owner): replicas stopped, job tokens revoked, status
/// `stopped`; the model stays and can be deployed again.
pub async fn undeploy(
    State(state): State<AppState>,
    AuthCaller(user): AuthCaller,
    Path(raw_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = model_for(&state, &user, &raw_id, Level::Owner).await?;
    let _changing = state.changes.lock().await;
    // Stopped first: from now on nothing the replicas report changes it.
    let id = row.id.clone();
    state
        .store
        .call(move |c| models::set_status(c, &id, DeployStatus::Stopped))
        .await?;
    state.deployments.remove(&row.name).await;
    Ok(empty())
}

/// The status of a model's current deployment: what it logged, and what its replicas say.
async fn status_of(state: &AppState, row: &ModelRow) -> Result<DeploymentStatus, ApiError> {
    let live = state.deployments.get(&row.name);
    let restore_error = state.deployments.restore_error(&row.name);
    let info = status::deployment(&state.store, row, live.as_deref(), restore_error).await?;
    Ok(info.status)
}

/// `GET /api/v2/deploy/{model_id}/status` (Read).
pub async fn deploy_status(
    State(state): State<AppState>,
    AuthCaller(user): AuthCaller,
    Path(raw_id): Path<String>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    let row = model_for(&state, &user, &raw_id, Level::Read).await?;
    Ok(Json(status_of(&state, &row).await?))
}

/// `GET /api/v2/deploy/{model_id}/logs` (Read): the recent output of each replica of the
/// current deployment. A replica whose output cannot be read gets an entry saying so.
pub async fn deploy_logs(
    State(state): State<AppState>,
    AuthCaller(user): AuthCaller,
    Path(raw_id): Path<String>,
) -> Result<Json<Vec<ReplicaOutput>>, ApiError> {
    let row = model_for(&state, &user, &raw_id, Level::Read).await?;
    let Some(live) = state.deployments.get(&row.name) else {
        return Ok(Json(Vec::new()));
    };
    let mut out = Vec::new();
    for replica in live.versions.newest().members() {
        let entry = match replica.logs().streams(state.log_tail_lines).await {
            Ok((stdout, stderr)) => ReplicaOutput { stdout, stderr },
            Err(why) => ReplicaOutput {
                stdout: String::new(),
                stderr: format!(
                    "cortex: the output of replica {} cannot be read: {why}",
                    replica.id()
                ),
            },
        };
        out.push(entry);
    }
    Ok(Json(out))
}

/// The model a job token speaks for; with a model in the path, it must be that one (403).
async fn job_model(
    state: &AppState,
    job: &JobAuth,
    path_id: Option<&str>,
) -> Result<ModelRow, ApiError> {
    if let Some(raw) = path_id {
        let id = model_id(raw)?;
        if id != job.0.model_id {
            return Err(ApiError::Forbidden(format!(
                "this job token belongs to model {}, not to model {id}",
                job.0.model_id
            )));
        }
    }
    load_model(state, &job.0.model_id).await
}

/// `GET /api/v2/deploy/status-internal` (job token).
pub async fn status_internal(
    State(state): State<AppState>,
    job: JobAuth,
) -> Result<Json<DeploymentStatus>, ApiError> {
    let row = job_model(&state, &job, None).await?;
    Ok(Json(status_of(&state, &row).await?))
}

/// `GET /api/v2/deploy/{model_id}/status-internal` (job token of that model).
pub async fn status_internal_of(
    State(state): State<AppState>,
    job: JobAuth,
    Path(raw_id): Path<String>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    let row = job_model(&state, &job, Some(&raw_id)).await?;
    Ok(Json(status_of(&state, &row).await?))
}

/// `POST /api/v2/deploy/update-status` (job token): `in_progress`, `complete` or `failed`,
/// from the current deployment only.
pub async fn update_status(
    State(state): State<AppState>,
    job: JobAuth,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: UpdateStatus = parse_json(&body)?;
    let status = DeployStatus::parse(&req.status).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "invalid status {:?}: use one of not_started, starting, in_progress, complete, stopped, failed",
            req.status
        ))
    })?;
    // No deploy lock: a deployment reporting must not wait for another API's stop. The
    // writes below are guarded by the deployment number instead.
    let row = job_model(&state, &job, None).await?;
    if job.0.deployment.is_none() {
        return finish_save(&state, &row, status).await;
    }
    if !matches!(
        status,
        DeployStatus::InProgress | DeployStatus::Complete | DeployStatus::Failed
    ) {
        return Err(ApiError::Conflict(format!(
            "a deployment cannot set its own status to {}; it reports in_progress, complete or failed",
            status.as_str()
        )));
    }
    if row.deploy_status == DeployStatus::Stopped {
        return Err(ApiError::Conflict(format!(
            "model {} was undeployed (stopped); its deployment cannot set it {}",
            row.id,
            status.as_str()
        )));
    }
    if job.0.deployment.is_some_and(|d| d != row.deployment) {
        return Err(ApiError::Conflict(format!(
            "this token belongs to deployment {} of model {}, which a newer deployment ({}) superseded",
            job.0.deployment.unwrap_or_default(),
            row.id,
            row.deployment
        )));
    }
    let (id, deployment) = (row.id.clone(), row.deployment);
    let metadata = match &req.metadata {
        Some(m) => Some(serde_json::to_string(m).map_err(|e| ApiError::Internal(e.to_string()))?),
        None => None,
    };
    // `complete` is what the server sees, not only what a replica says: until the version
    // answers through the gateway it stays `starting` (the watcher records `complete` then).
    let serving = state
        .deployments
        .get(&row.name)
        .is_some_and(|live| live.versions.newest().is_ready());
    let record = status != DeployStatus::Complete || serving;
    let message = req.message.clone();
    let written = state
        .store
        .call(move |c| {
            if let Some(m) = &metadata {
                models::set_metadata(c, &id, m)?;
            }
            if let Some(text) = &message {
                let level = if status == DeployStatus::Failed {
                    deploy_logs::Level::Error
                } else {
                    deploy_logs::Level::Warning
                };
                deploy_logs::add(c, &id, deployment, level, text)?;
            }
            if !record {
                return Ok(true);
            }
            models::set_status_of_deployment(c, &id, deployment, status)
        })
        .await?;
    if !written {
        return Err(ApiError::Conflict(format!(
            "deployment {deployment} of model {} was superseded or undeployed meanwhile; its status stays",
            row.id
        )));
    }
    Ok(empty())
}

/// `update-status` with a saved model's update token: `complete` makes it deployable.
async fn finish_save(
    state: &AppState,
    row: &ModelRow,
    status: DeployStatus,
) -> Result<Json<Value>, ApiError> {
    match status {
        DeployStatus::Complete => {
            let id = row.id.clone();
            state
                .store
                .call(move |c| models::finish_save(c, &id))
                .await?;
            Ok(empty())
        }
        DeployStatus::InProgress => Ok(empty()),
        other => Err(ApiError::Conflict(format!(
            "an update token marks its saved model complete (or in_progress), not {}",
            other.as_str()
        ))),
    }
}

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
            let owns = super::require(caller, &base, Level::Owner).is_ok();
            (base, caller.user.id.clone(), owns)
        }
    };
    let req: SaveRequest = parse_json(&body)?;
    crate::spec::check_api_name(&req.model_name)
        .map_err(|e| ApiError::Unprocessable(format!("model_name: {e}")))?;
    let mut spec: crate::spec::ApiSpec = serde_json::from_str(&base.spec_json)
        .map_err(|e| ApiError::Internal(format!("the spec of {} is unreadable: {e}", base.name)))?;
    spec.name = req.model_name.clone();
    spec.networking.endpoint = format!("/{}", req.model_name);
    if !inherits_env {
        spec.predictor.env.clear();
    }
    let spec_json = serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    let _changing = state.changes.lock().await;
    let paths = state.store.call(|c| models::list(c)).await?;
    if let Some(other) = paths
        .iter()
        .find(|o| versions::paths_of(o).contains(&spec.networking.endpoint))
    {
        return Err(ApiError::Conflict(format!(
            "{} already serves api {}; choose another model_name",
            spec.networking.endpoint, other.name
        )));
    }
    let expires_at = crate::clock::now() + update_token_lifetime();
    let answer = state
        .store
        .call(move |c| {
            let saved =
                models::create_saved(c, &base, &req.model_name, &owner, &spec_json, inherits_env)?;
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
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let size = body.len() as u64;
    let (bundles, s) = (state.bundles.clone(), sha.clone());
    tokio::task::spawn_blocking(move || bundles.write(&s, &body))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let (bundles, id) = (state.bundles.clone(), row.id.clone());
    state
        .store
        .call(move |c| {
            bundles.record(c, &sha, size)?;
            models::set_overlay(c, &id, &sha)
        })
        .await?;
    Ok(empty())
}

/// `GET|POST /api/v2/deploy/log` (job token): a warning or an error of the deployment.
pub async fn log(
    State(state): State<AppState>,
    job: JobAuth,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: JobLog = parse_json(&body)?;
    let level = deploy_logs::Level::parse(&req.level).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "invalid log level {:?}: use \"warning\" or \"error\"",
            req.level
        ))
    })?;
    let Some(deployment) = job.0.deployment else {
        return Err(ApiError::Forbidden(
            "an update token only uploads its saved model's files and marks it complete; log with the deployment's job token".into(),
        ));
    };
    let row = job_model(&state, &job, None).await?;
    let id = row.id.clone();
    state
        .store
        .call(move |c| deploy_logs::add(c, &id, deployment, level, &req.message))
        .await?;
    Ok(empty())
}
