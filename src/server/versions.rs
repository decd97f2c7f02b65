//! Versions: what a stored model runs. Its spec (from `cortex deploy`), with the parameters of
//! the last Model Bazaar deploy over it (replica range, memory, an extra route), and its
//! bundle. The control API, the Model Bazaar API and a server restart all start a version
//! through [`start`]: one deployment path.

use sha2::{Digest, Sha256};

use super::deployments::{Deployment, Deployments};
use crate::api::DeployParams;
use crate::spec::{self, ApiSpec, Mem};
use crate::store::model_status;
use crate::store::{BundleStore, ModelRow, StoreError};

/// Why a stored model cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("its stored spec is unreadable ({0})")]
    Spec(String),
    #[error("its deploy parameters are unreadable ({0})")]
    Params(String),
    #[error("its project bundle {sha} could not be unpacked ({why}); run `cortex deploy` again to upload it")]
    Bundle { sha: String, why: String },
    /// Its bundle, or a saved model's files over it, cannot be unpacked safely: uploading the
    /// same again cannot help (a 422 naming the one at fault).
    #[error("{0}")]
    Unpackable(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The most memory a deploy may ask for per replica: 1 TiB, in MB.
const MAX_MEMORY_MB: i64 = 1 << 20;

/// Checks deploy parameters; the message says what to change (a 422).
pub fn check_params(p: &DeployParams) -> Result<(), String> {
    if let Some(name) = &p.deployment_name {
        check_deployment_name(name).map_err(|e| format!("deployment_name: {e}"))?;
    }
    for (field, value) in [
        ("autoscaling_min", p.autoscaling_min),
        ("autoscaling_max", p.autoscaling_max),
    ] {
        if value.is_some_and(|v| v < 0) {
            return Err(format!("{field}: must be 0 or more"));
        }
        if value.is_some_and(|v| v > i64::from(u32::MAX)) {
            return Err(format!(
                "{field}: {} is too large",
                value.unwrap_or_default()
            ));
        }
    }
    if let (Some(min), Some(max)) = (p.autoscaling_min, p.autoscaling_max) {
        if min > max {
            return Err(format!(
                "autoscaling_min ({min}) is greater than autoscaling_max ({max}); make min at most max"
            ));
        }
    }
    if let Some(mb) = p.memory {
        if mb > MAX_MEMORY_MB {
            return Err(format!(
                "memory: {mb} MB is more than a replica can have (at most {MAX_MEMORY_MB} MB)"
            ));
        }
        if mb <= 0 {
            return Err(format!(
                "memory: {mb} is not a positive number of MB; give the memory per replica, e.g. 800"
            ));
        }
    }
    Ok(())
}

/// The longest `deployment_name`.
const MAX_DEPLOYMENT_NAME: usize = 64;

/// A `deployment_name` is one URL path segment, as Model Bazaar's clients send it:
/// `[A-Za-z0-9._-]`, 1 to 64 characters; not `.` or `..` (clients resolve those away), not
/// a model id (`/<model_id>/...` routes to that model) and not a path the server keeps.
pub fn check_deployment_name(name: &str) -> Result<(), String> {
    let fits = !name.is_empty()
        && name.len() <= MAX_DEPLOYMENT_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !fits {
        return Err(format!(
            "{name:?} is not a URL path segment: use 1 to {MAX_DEPLOYMENT_NAME} letters, digits, dots, underscores or dashes"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not a name a URL can carry; choose another"
        ));
    }
    if uuid::Uuid::parse_str(name).is_ok() {
        return Err(format!(
            "{name:?} is a model id, and /<model_id>/ routes to that model; choose a name that is not a UUID"
        ));
    }
    if matches!(name, "api" | "healthz" | "metrics") {
        return Err(format!(
            "/{name} belongs to the server; choose another name"
        ));
    }
    Ok(())
}

/// The parameters stored with a model (none: the defaults).
pub fn stored_params(row: &ModelRow) -> Result<DeployParams, VersionError> {
    match &row.deploy_params_json {
        None => Ok(DeployParams::default()),
        Some(json) => serde_json::from_str(json).map_err(|e| VersionError::Params(e.to_string())),
    }
}

/// The parameters of a Model Bazaar deploy that stay over `new`, a file deployed after
/// `old`: a field the file now says otherwise is the file's again (the later word wins); the
/// others stay as the Model Bazaar deploy set them.
pub fn params_kept(mut params: DeployParams, old: &ApiSpec, new: &ApiSpec) -> DeployParams {
    if old.compute.mem != new.compute.mem {
        params.memory = None;
    }
    let replicas = |s: &ApiSpec| {
        s.autoscaling
            .as_ref()
            .map(|a| (a.min_replicas, a.max_replicas, a.init_replicas))
    };
    if replicas(old) != replicas(new) {
        params.autoscaling_enabled = None;
        params.autoscaling_min = None;
        params.autoscaling_max = None;
    }
    params
}

/// The spec a version runs: `spec` with the deploy's parameters over it. Autoscaling disabled
/// means exactly one replica; enabled (or a range given) sets the range, keeping the initial
/// count inside it; memory (MB) replaces `compute.mem`.
pub fn effective_spec(spec: &ApiSpec, p: &DeployParams) -> ApiSpec {
    let mut spec = spec.clone();
    if let Some(mb) = p.memory {
        if let Ok(mem) = format!("{mb}M").parse::<Mem>() {
            spec.compute.mem = Some(mem);
        }
    }
    if let Some(a) = spec.autoscaling.as_mut() {
        let to_u32 = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
        match p.autoscaling_enabled {
            Some(false) => {
                a.min_replicas = 1;
                a.max_replicas = 1;
                a.init_replicas = 1;
            }
            _ => {
                if let Some(min) = p.autoscaling_min {
                    a.min_replicas = to_u32(min);
                }
                if let Some(max) = p.autoscaling_max {
                    a.max_replicas = to_u32(max);
                }
                a.max_replicas = a.max_replicas.max(a.min_replicas);
                a.init_replicas = a.init_replicas.clamp(a.min_replicas, a.max_replicas);
            }
        }
    }
    spec
}

/// The hash that decides "up to date": the effective spec, the extra route and the bundle (a
/// saved model's is `<bundle>+<its files>`). Without an extra route it is the hash earlier
/// versions of cortex stored.
pub fn version_hash(spec: &ApiSpec, deployment_name: Option<&str>, bundle: &str) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(spec).unwrap_or_default());
    h.update(b"\0");
    h.update(bundle.as_bytes());
    if let Some(name) = deployment_name {
        h.update(b"\0route:");
        h.update(name.as_bytes());
    }
    hex::encode(h.finalize())
}

/// What `version_hash` takes as the bundle of `row`: its bundle, with its saved files.
pub fn bundle_key(row: &ModelRow) -> String {
    match &row.overlay_sha256 {
        Some(overlay) => format!("{}+{overlay}", row.bundle_sha256),
        None => row.bundle_sha256.clone(),
    }
}

/// The stored spec of `row` with its parameters over it.
pub fn spec_of(row: &ModelRow) -> Result<ApiSpec, VersionError> {
    let spec: ApiSpec =
        serde_json::from_str(&row.spec_json).map_err(|e| VersionError::Spec(e.to_string()))?;
    Ok(effective_spec(&spec, &stored_params(row)?))
}

/// The paths a stored model answers at: its endpoint, and `/<deployment_name>` when a Model
/// Bazaar deploy asked for one.
pub fn paths_of(row: &ModelRow) -> Vec<String> {
    let endpoint = serde_json::from_str::<ApiSpec>(&row.spec_json)
        .ok()
        .map(|spec| spec.networking.endpoint);
    endpoint
        .into_iter()
        .chain(row.deployment_name.as_ref().map(|n| format!("/{n}")))
        .collect()
}

/// The paths `row` takes: its endpoint and `/<deployment_name>`; for a RealtimeAPI, every
/// path under `/<model_id>/` and `/<deployment_name>/` too.
pub fn taken_by(row: &ModelRow) -> Vec<super::endpoints::Taken> {
    let batch = row.kind == spec::ApiKind::BatchAPI.as_str();
    let realtime = row.kind == spec::ApiKind::RealtimeAPI.as_str();
    let named = row.deployment_name.as_ref().map(|n| format!("/{n}"));
    let mut taken: Vec<super::endpoints::Taken> = paths_of(row)
        .into_iter()
        .map(|path| super::endpoints::Taken {
            api: row.name.clone(),
            prefix: realtime && named.as_ref() == Some(&path),
            path,
            batch,
        })
        .collect();
    if realtime {
        taken.push(super::endpoints::Taken {
            api: row.name.clone(),
            path: format!("/{}", row.id),
            batch: false,
            prefix: true,
        });
    }
    taken
}

/// Starts the version `row` describes; replaces what ran before (which serves until it is
/// ready).
pub async fn start(
    bundles: &BundleStore,
    deployments: &Deployments,
    row: &ModelRow,
    deployment: Deployment,
) -> Result<(), VersionError> {
    let spec = spec_of(row)?;
    let (b, sha, overlay, with_env) = (
        bundles.clone(),
        row.bundle_sha256.clone(),
        row.overlay_sha256.clone(),
        row.inherits_env,
    );
    // A copy saved without its base's secrets gets its files, never its `.env`.
    let dir = tokio::task::spawn_blocking(move || match with_env {
        true => b.unpack_layers(&sha, overlay.as_deref()),
        false => b.unpack_without_env(&sha, overlay.as_deref()),
    })
    .await
    .map_err(|e| VersionError::Bundle {
        sha: row.bundle_sha256.clone(),
        why: e.to_string(),
    })?
    .map_err(|e| match e {
        StoreError::Unprocessable(why) => VersionError::Unpackable(why),
        other => VersionError::Bundle {
            sha: row.bundle_sha256.clone(),
            why: other.to_string(),
        },
    })?;
    deployments.apply(row, spec, (&dir, deployment)).await?;
    Ok(())
}

/// [`start`], and when it fails, the model is recorded `failed` with why as an error of its
/// deployment (a client polling the status learns it, instead of `starting` for ever).
pub async fn start_or_fail(
    bundles: &BundleStore,
    deployments: &Deployments,
    store: &crate::store::Store,
    row: &ModelRow,
) -> Result<(), VersionError> {
    let Err(e) = start(bundles, deployments, row, Deployment::Next).await else {
        return Ok(());
    };
    let (id, why) = (row.id.clone(), format!("cannot start {}: {e}", row.name));
    let recorded = store
        .call(move |c| {
            let current = crate::store::models::get(c, &id)?.map_or(0, |m| m.deployment);
            crate::store::deploy_logs::add(
                c,
                &id,
                current,
                crate::store::deploy_logs::Level::Error,
                &why,
            )?;
            model_status::set_status(c, &id, crate::store::DeployStatus::Failed)
        })
        .await;
    if let Err(store_error) = recorded {
        tracing::warn!(
            "cannot record that {} failed to start: {store_error}",
            row.name
        );
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ApiSpec {
        let yaml = "- name: iris\n  kind: RealtimeAPI\n  predictor: {type: command, command: x}\n  autoscaling: {min_replicas: 2, max_replicas: 5, init_replicas: 3}\n";
        spec::parse_str(yaml, "cortex.yaml").unwrap().remove(0)
    }

    #[test]
    fn parameters_go_over_the_spec() {
        let p = DeployParams {
            autoscaling_min: Some(1),
            autoscaling_max: Some(4),
            memory: Some(800),
            ..DeployParams::default()
        };
        let s = effective_spec(&spec(), &p);
        let a = s.autoscaling.as_ref().unwrap();
        assert_eq!((a.min_replicas, a.max_replicas, a.init_replicas), (1, 4, 3));
        assert_eq!(s.compute.mem.as_ref().unwrap().to_string(), "800M");
        let off = DeployParams {
            autoscaling_enabled: Some(false),
            ..DeployParams::default()
        };
        let a = effective_spec(&spec(), &off).autoscaling.unwrap();
        assert_eq!((a.min_replicas, a.max_replicas, a.init_replicas), (1, 1, 1));
        assert_eq!(effective_spec(&spec(), &DeployParams::default()), spec());
    }

    #[test]
    fn bad_parameters_say_what_to_change() {
        let check = |p: DeployParams| check_params(&p).unwrap_err();
        let e = check(DeployParams {
            autoscaling_min: Some(3),
            autoscaling_max: Some(2),
            ..DeployParams::default()
        });
        assert!(e.contains("greater than autoscaling_max"), "{e}");
        let e = check(DeployParams {
            autoscaling_min: Some(-1),
            ..DeployParams::default()
        });
        assert!(e.starts_with("autoscaling_min: must be 0 or more"), "{e}");
        let e = check(DeployParams {
            memory: Some(0),
            ..DeployParams::default()
        });
        assert!(e.starts_with("memory: 0 is not a positive number"), "{e}");
        let e = check(DeployParams {
            deployment_name: Some("My App".into()),
            ..DeployParams::default()
        });
        assert!(e.starts_with("deployment_name: "), "{e}");
        assert!(check_params(&DeployParams::default()).is_ok());
    }

    #[test]
    fn the_hash_changes_with_the_route_only_when_there_is_one() {
        let s = spec();
        let plain = version_hash(&s, None, "b");
        assert_ne!(plain, version_hash(&s, Some("app"), "b"));
        assert_ne!(plain, version_hash(&s, None, "c"));
    }
}
