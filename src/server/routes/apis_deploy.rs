//! `POST /api/v2/apis`: deploys every API of a `cortex.yaml`, all or nothing. Every API is
//! checked first (its path, its files, a splitter's apis, who may change it, an update under
//! way); when one is refused, nothing changes and each API's result says why. Then every spec
//! is stored in one transaction, and the versions that changed are started.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;

use super::apis::base_url;
use super::parse_json;
use super::project_check;
use crate::api::{
    ApiStatus, DeployAction, DeployParams, DeployRefusal, DeployRequest, DeployResult,
};
use crate::server::access::Level;
use crate::server::auth::AuthMember;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::server::tokens::Identity;
use crate::server::{endpoints, status, versions};
use crate::spec::{self, ApiSpec};
use crate::store::model_status;
use crate::store::models::{self, NewSpec, Saved};
use crate::store::{ModelRow, StoreError};

pub async fn deploy(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Vec<DeployResult>>, ApiError> {
    let req: DeployRequest = parse_json(&body)?;
    let base = base_url(&headers);
    let _changing = state.changes.lock().await;
    state.disk.check()?;
    let mut specs = spec::parse_str(&req.config, &req.config_file)
        .map_err(|e| ApiError::InvalidConfig(e.to_string()))?;
    // TrafficSplitters last, as cortex deploys them: their apis are in place first.
    specs.sort_by_key(|s| s.kind == spec::ApiKind::TrafficSplitter);
    // Only a bundle the caller may use: another user's answers as if it were not stored.
    if !crate::server::bundle_access::check(&state, &caller, &req.bundle).await? {
        return Err(ApiError::NotFound(format!(
            "bundle {} was not uploaded; PUT it to /api/v2/bundles/{} first",
            req.bundle, req.bundle
        )));
    }
    let bundles = state.bundles.clone();
    let sha = req.bundle.clone();
    let project_dir = tokio::task::spawn_blocking(move || bundles.unpack(&sha))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;

    let rows = state.store.call(|c| models::list(c)).await?;
    let checks = Checks {
        state: &state,
        caller: &caller,
        req: &req,
        rows: &rows,
        project_dir: &project_dir,
        base: &base,
        in_file: specs.iter().map(|s| (s.name.clone(), s.kind)).collect(),
        taken: rows.iter().flat_map(versions::taken_by).collect(),
        ports: ports_taken(&rows, &specs),
    };
    let mut checked = Vec::with_capacity(specs.len());
    for spec in specs {
        checked.push(checks.check(spec).await?);
    }
    if checked.iter().any(|c| matches!(c, Checked::Refused(_))) {
        return Ok(Json(refuse_all(checked, &req.config_file)));
    }
    match save_all(&state, &caller, &req, &checked).await? {
        Ok(saved) => {
            let results = start_all(&state, &base, checked, saved).await?;
            crate::server::local_ports::sync_stored(&state.store, &state.local_ports).await;
            Ok(Json(results))
        }
        Err(why) => Ok(Json(refuse_all(
            checked
                .into_iter()
                .map(|c| match c {
                    Checked::Go { spec, .. } => Checked::Refused(failed(&spec, why.clone())),
                    other => other,
                })
                .collect(),
            &req.config_file,
        ))),
    }
}

/// What the checks made of one API of the file.
enum Checked {
    /// It may not be deployed: the result says why.
    Refused(DeployResult),
    /// This very spec is what an update under way is rolling out: nothing to do.
    AlreadyUpdating(DeployResult),
    /// To store and start (when it changed).
    Go {
        spec: Box<ApiSpec>,
        hash: String,
        existing: Option<Box<ModelRow>>,
        /// The Model Bazaar deploy parameters that stay over it (`None`: none).
        params_json: Option<String>,
    },
}

/// What every API of a file is checked against.
struct Checks<'a> {
    state: &'a AppState,
    caller: &'a Identity,
    req: &'a DeployRequest,
    rows: &'a [ModelRow],
    project_dir: &'a std::path::Path,
    base: &'a str,
    in_file: Vec<(String, spec::ApiKind)>,
    taken: Vec<endpoints::Taken>,
    /// The local ports of the file's APIs and of the stored ones it does not redeploy.
    ports: Vec<(String, u16)>,
}

impl Checks<'_> {
    async fn check(&self, spec: ApiSpec) -> Result<Checked, ApiError> {
        let (name, kind) = (spec.name.clone(), spec.kind);
        let batch = kind == spec::ApiKind::BatchAPI;
        let endpoint = &spec.networking.endpoint;
        let existing = self.rows.iter().find(|r| r.name == name).cloned();
        let python = match spec.predictor.as_ref().map(|p| p.kind) {
            Some(kind) if kind.runs_shim() => {
                let interpreters = self.state.deployments.interpreters();
                crate::server::project_python::resolve(self.project_dir, interpreters)
                    .await
                    .err()
            }
            _ => None,
        };
        let refusal = endpoints::conflict(&self.taken, &name, endpoint, batch)
            .or_else(|| project_check::check_project(&spec, self.project_dir, &self.req.config_file).err())
            .or(python)
            .or_else(|| check_backends(&spec, &self.in_file, self.rows, self.caller).err())
            .or_else(|| {
                let port = spec.networking.local_port?;
                self.state.local_ports.refusal(&name, port, &self.ports)
            })
            .or_else(|| {
                let row = existing.as_ref()?;
                // Updating an api is its owner's (or a team admin's, or an admin's) to do.
                if let Err(e) = super::require(self.caller, row, Level::Owner) {
                    return Some(e.to_string());
                }
                (row.kind != kind.as_str()).then(|| format!(
                    "{name} is already deployed as a {}; its kind cannot change (delete it first with `cortex delete {name}`)",
                    row.kind
                ))
            });
        if let Some(why) = refusal {
            let why = located(self.req, &name, why);
            return Ok(Checked::Refused(refused(
                &spec,
                why,
                DeployRefusal::InvalidConfig,
            )));
        }
        // A Model Bazaar deploy's parameters stay applied over the new spec, but for what the
        // file changed since.
        let (params, deployment_name) = match &existing {
            Some(row) => (
                kept_params(row, &spec).map_err(|e| ApiError::Internal(e.to_string()))?,
                row.deployment_name.clone(),
            ),
            None => Default::default(),
        };
        let hash = versions::version_hash(
            &versions::effective_spec(&spec, &params),
            deployment_name.as_deref(),
            &self.req.bundle,
        );
        if let Some(running) = self.state.deployments.get(&name) {
            // A version rolling out: an update whose older version still serves, or a first
            // version that never served yet (not one that served and restarts, nor one a
            // restart of the server brings back).
            let served = existing.as_ref().is_some_and(|row| {
                let older = row.serving.as_ref().map(|s| &s.spec_hash);
                (row.current_served && row.spec_hash == running.spec_hash)
                    || older == Some(&running.spec_hash)
            });
            let updating = status::api_status(&running) == ApiStatus::Updating
                && (running.has_older() || !served);
            if updating && running.spec_hash == hash {
                return Ok(Checked::AlreadyUpdating(DeployResult {
                    name: name.clone(),
                    kind: kind.into(),
                    action: DeployAction::UpToDate,
                    model_id: Some(running.model_id.clone()),
                    message: format!("{name} ({kind}) is already updating"),
                    error: None,
                    refused: None,
                    endpoint: Some(format!("{}{endpoint}", self.base)),
                }));
            }
            if updating && !self.req.force {
                let why = format!("{name} is updating (override with --force)");
                return Ok(Checked::Refused(refused(
                    &spec,
                    why,
                    DeployRefusal::Conflict,
                )));
            }
        }
        let params_json = (params != DeployParams::default())
            .then(|| serde_json::to_string(&params))
            .transpose()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Checked::Go {
            spec: Box::new(spec),
            hash,
            existing: existing.map(Box::new),
            params_json,
        })
    }
}

/// `why`, after the place in the file of the field it starts with (`apis[1].name: ...`), as
/// the parser's messages are: `cortex.yaml:8:13: apis[1].name: ...`.
fn located(req: &DeployRequest, api: &str, why: String) -> String {
    let field = why.split_once(": ").map(|(f, _)| f).unwrap_or_default();
    let is_field = !field.is_empty()
        && field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c));
    if !is_field {
        return why;
    }
    // cortex 0.21's `models:` list is read as models.paths: name the field as it is written.
    let listed = field.replacen("predictor.models.paths[", "predictor.models[", 1);
    let found = spec::locate(&req.config, api, field)
        .map(|at| (at, why.clone()))
        .or_else(|| {
            let at = spec::locate(&req.config, api, &listed)?;
            Some((at, format!("{listed}{}", &why[field.len()..])))
        });
    match found {
        Some(((line, column), why)) => format!("{}:{line}:{column}: {why}", req.config_file),
        None => why,
    }
}

/// Which API has which local port once the file is deployed: the file's, and the stored ones
/// it does not redeploy.
fn ports_taken(rows: &[ModelRow], specs: &[ApiSpec]) -> Vec<(String, u16)> {
    let stored = crate::server::local_ports::wanted(rows)
        .into_iter()
        .filter(|w| !specs.iter().any(|s| s.name == w.api))
        .map(|w| (w.api, w.port));
    let in_file = specs
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.networking.local_port?)));
    stored.chain(in_file).collect()
}

/// A refused API's result.
fn refused(spec: &ApiSpec, error: String, why: DeployRefusal) -> DeployResult {
    DeployResult {
        refused: Some(why),
        ..failed(spec, error)
    }
}

/// The result of an API not deployed (refused, or because another of the file was).
fn failed(spec: &ApiSpec, error: String) -> DeployResult {
    let (name, kind) = (&spec.name, spec.kind);
    DeployResult {
        name: name.clone(),
        kind: kind.into(),
        action: DeployAction::Failed,
        model_id: None,
        message: format!("{name} ({kind}): {error}"),
        error: Some(error),
        refused: None,
        endpoint: None,
    }
}

/// The answer when an API of the file was refused: nothing changed, and the APIs that passed
/// their checks say so.
fn refuse_all(checked: Vec<Checked>, config_file: &str) -> Vec<DeployResult> {
    let refused: Vec<String> = checked
        .iter()
        .filter_map(|c| match c {
            Checked::Refused(r) => Some(r.name.clone()),
            _ => None,
        })
        .collect();
    let why = format!(
        "not deployed: {} of {config_file} could not be deployed, and a file deploys all or nothing; nothing was changed",
        refused.join(", ")
    );
    checked
        .into_iter()
        .map(|c| match c {
            Checked::Refused(r) | Checked::AlreadyUpdating(r) => r,
            Checked::Go { spec, .. } => failed(&spec, why.clone()),
        })
        .collect()
}

/// Stores every spec to go in one transaction. `Ok(Err(why))`: a conflict, nothing stored.
async fn save_all(
    state: &AppState,
    caller: &Identity,
    req: &DeployRequest,
    checked: &[Checked],
) -> Result<Result<Vec<(ModelRow, Saved)>, String>, ApiError> {
    let mut specs = Vec::new();
    for c in checked {
        if let Checked::Go {
            spec,
            hash,
            params_json,
            ..
        } = c
        {
            specs.push(NewSpec {
                name: spec.name.clone(),
                kind: spec.kind.as_str().to_string(),
                owner_id: caller.user.id.clone(),
                spec_json: serde_json::to_string(spec)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                spec_hash: hash.clone(),
                bundle_sha256: req.bundle.clone(),
                config_file: req.config_file.clone(),
                deploy_params_json: params_json.clone(),
            });
        }
    }
    match state
        .store
        .call(move |c| models::save_specs(c, &specs))
        .await
    {
        Ok(saved) => Ok(Ok(saved)),
        Err(StoreError::Conflict(m)) => Ok(Err(m)),
        Err(e) => Err(e.into()),
    }
}

/// Starts what changed; every API's result.
async fn start_all(
    state: &AppState,
    base: &str,
    checked: Vec<Checked>,
    saved: Vec<(ModelRow, Saved)>,
) -> Result<Vec<DeployResult>, ApiError> {
    let mut saved = saved.into_iter();
    let mut results = Vec::with_capacity(checked.len());
    for c in checked {
        let (spec, existing) = match c {
            Checked::Refused(r) | Checked::AlreadyUpdating(r) => {
                results.push(r);
                continue;
            }
            Checked::Go { spec, existing, .. } => (spec, existing.map(|b| *b)),
        };
        let Some((row, saved)) = saved.next() else {
            return Err(ApiError::Internal(format!(
                "{} was not stored with the others",
                spec.name
            )));
        };
        results.push(start_one(state, base, &spec, existing, row, saved).await?);
    }
    Ok(results)
}

/// Starts one stored API when its version changed (or does not run).
async fn start_one(
    state: &AppState,
    base: &str,
    spec: &ApiSpec,
    existing: Option<ModelRow>,
    row: ModelRow,
    saved: Saved,
) -> Result<DeployResult, ApiError> {
    let (name, kind) = (&spec.name, spec.kind);
    // The version it replaces is swept once nothing runs from it.
    if let Some(old) = existing.filter(|old| old.bundle_sha256 != row.bundle_sha256) {
        state.sweeper.release(&old);
    }
    // What runs can differ from what is stored when an earlier deploy saved its spec and then
    // failed to start it: the stored spec is what must run.
    let runs_stored_spec = state
        .deployments
        .get(name)
        .is_some_and(|rt| rt.spec_hash == row.spec_hash);
    let action = match saved {
        Saved::Created => DeployAction::Created,
        Saved::Updated => DeployAction::Updated,
        Saved::Unchanged if runs_stored_spec => DeployAction::UpToDate,
        Saved::Unchanged => DeployAction::Updated,
    };
    if action != DeployAction::UpToDate {
        if !row.deploy_status.is_active() {
            // Undeployed (or failed) before: it starts again.
            let id = row.id.clone();
            state
                .store
                .call(move |c| {
                    model_status::set_status(c, &id, crate::store::DeployStatus::Starting)
                })
                .await?;
        }
        versions::start_or_fail(&state.bundles, &state.deployments, &state.store, &row).await?;
    }
    let message = match action {
        DeployAction::Created => format!("creating {name} ({kind})"),
        DeployAction::Updated => format!("updating {name} ({kind})"),
        _ => format!("{name} ({kind}) is up to date"),
    };
    let message = match row.inherits_env {
        true => message,
        false => format!(
            "{message}; it is a copy saved without its base's secrets, so it runs without .env and predictor.env (deploy under another name to use yours)"
        ),
    };
    Ok(DeployResult {
        name: name.clone(),
        kind: kind.into(),
        action,
        model_id: Some(row.id),
        message,
        error: None,
        refused: None,
        endpoint: Some(format!("{base}{}", spec.networking.endpoint)),
    })
}

/// A TrafficSplitter's apis are RealtimeAPIs of this file or deployed ones `caller` may read;
/// one it may not read answers as one that does not exist.
fn check_backends(
    spec: &ApiSpec,
    in_file: &[(String, spec::ApiKind)],
    rows: &[ModelRow],
    caller: &crate::server::tokens::Identity,
) -> Result<(), String> {
    use crate::server::access::{level, ModelAccess};
    let unreadable = |r: &ModelRow| level(&caller.caller(), &ModelAccess::from(r)) < Level::Read;
    for (i, backend) in spec.apis.iter().enumerate() {
        let name = &backend.name;
        if *name == spec.name {
            return Err(format!(
                "apis[{i}].name: a TrafficSplitter cannot send requests to itself; name a RealtimeAPI"
            ));
        }
        let stored = rows.iter().find(|r| r.name == *name);
        let kind = if stored.is_some_and(unreadable) {
            None
        } else {
            in_file
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, k)| k.as_str().to_string())
                .or_else(|| stored.map(|r| r.kind.clone()))
        };
        match kind.as_deref() {
            Some("RealtimeAPI") => {}
            Some(other) => {
                return Err(format!(
                    "apis[{i}].name: {name} is a {other}; a TrafficSplitter sends requests to RealtimeAPIs only"
                ))
            }
            None => {
                return Err(format!(
                    "apis[{i}].name: {name} is not deployed and not in this file; deploy it first or add it to the file"
                ))
            }
        }
    }
    Ok(())
}

/// The Model Bazaar deploy parameters of `row` that stay over `spec`, the file deployed now.
/// A stored spec that no longer reads (written by an older server) keeps only the route: the
/// file is the word on everything else.
fn kept_params(row: &ModelRow, spec: &ApiSpec) -> Result<DeployParams, versions::VersionError> {
    let stored = versions::stored_params(row)?;
    if stored == DeployParams::default() {
        return Ok(stored);
    }
    Ok(match serde_json::from_str::<ApiSpec>(&row.spec_json) {
        Ok(old) => versions::params_kept(stored, &old, spec),
        Err(_) => DeployParams {
            deployment_name: stored.deployment_name,
            ..DeployParams::default()
        },
    })
}
