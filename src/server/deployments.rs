//! The live APIs: which replicas serve each one, the gateway's route table, and the rules that
//! turn replica phases into API statuses.
//!
//! The route table is read on every prediction: a short `std::sync::RwLock` read that clones an
//! `Arc`, never held across an await.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::api::{ApiStatus, ReplicaInfo, ReplicaPhase};
use crate::engine::{Engine, Replica, ReplicaPlan};
use crate::runtime;
use crate::spec::{ApiSpec, PredictorType};
use crate::store::{models, replicas, users, DeployStatus, ModelRow, Store, StoreError};

use super::metrics::Metrics;

/// One deployed API with its replicas.
pub struct ApiRuntime {
    pub model_id: String,
    pub spec: ApiSpec,
    pub spec_hash: String,
    pub last_updated: i64,
    /// Replicas running the latest spec.
    pub current: Replica,
    /// Replicas of the spec before an update, serving until `current` is ready.
    pub previous: Mutex<Option<Replica>>,
    pub metrics: Arc<Metrics>,
    pub log_path: PathBuf,
}

impl ApiRuntime {
    /// A ready replica's address, preferring the latest spec. O(1), no IO.
    pub fn pick(&self) -> Option<SocketAddr> {
        self.current.ready_addr().or_else(|| {
            self.previous
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .and_then(Replica::ready_addr)
        })
    }

    /// Takes the previous generation's replicas out (to stop them).
    pub fn take_previous(&self) -> Option<Replica> {
        self.previous
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The previous generation's replicas, while they still serve.
    pub fn previous_replica(&self) -> Option<Replica> {
        self.previous
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether an older generation is still serving while the latest one starts.
    pub fn has_previous(&self) -> bool {
        self.previous_replica().is_some()
    }

    /// Stops the previous generation, if any, and waits until it is gone.
    pub async fn stop_previous(&self) {
        if let Some(prev) = self.take_previous() {
            prev.stop().await;
        }
    }

    pub fn status(&self) -> ApiStatus {
        match self.current.snapshot().phase {
            ReplicaPhase::Ready => ApiStatus::Live,
            ReplicaPhase::Failed => ApiStatus::Error,
            ReplicaPhase::Stopped => ApiStatus::Stopped,
            ReplicaPhase::Initializing | ReplicaPhase::Restarting => ApiStatus::Updating,
        }
    }

    pub fn replicas(&self) -> Vec<ReplicaInfo> {
        let info = |r: &Replica, up_to_date: bool| {
            let s = r.snapshot();
            ReplicaInfo {
                id: s.id,
                phase: s.phase,
                up_to_date,
                pid: s.pid,
                port: s.port,
                restarts: s.restarts,
            }
        };
        let mut out = vec![info(&self.current, true)];
        if let Some(prev) = self.previous_replica() {
            out.push(info(&prev, false));
        }
        out
    }

    /// Why the API is not live, if the replicas say.
    pub fn errors(&self) -> Vec<String> {
        let s = self.current.snapshot();
        match (s.phase, s.last_error) {
            (ReplicaPhase::Ready, _) | (_, None) => Vec::new(),
            (_, Some(e)) => vec![e],
        }
    }
}

#[derive(Default)]
struct Routes {
    by_name: HashMap<String, Arc<ApiRuntime>>,
    by_path: HashMap<String, Arc<ApiRuntime>>,
    /// Set by [`Deployments::shutdown`]: nothing new is routed (or started) after it.
    closed: bool,
}

impl Routes {
    /// Removes `rt`'s path, only if the path still leads to it.
    fn unroute(&mut self, rt: &Arc<ApiRuntime>) {
        let path = &rt.spec.networking.endpoint;
        if self
            .by_path
            .get(path)
            .is_some_and(|cur| Arc::ptr_eq(cur, rt))
        {
            self.by_path.remove(path);
        }
    }
}

/// All live APIs of this server.
pub struct Deployments {
    engine: Arc<dyn Engine>,
    store: Store,
    data_dir: PathBuf,
    shim_path: PathBuf,
    server_url: OnceLock<String>,
    routes: RwLock<Routes>,
    /// Background work (replica stops, phase watchers) that shutdown waits for.
    tasks: tokio_util::task::TaskTracker,
    /// Why APIs could not be started again at server start-up, by name.
    restore_errors: Mutex<HashMap<String, String>>,
}

impl Deployments {
    pub fn new(
        engine: Arc<dyn Engine>,
        store: Store,
        data_dir: PathBuf,
        shim_path: PathBuf,
    ) -> Self {
        Deployments {
            engine,
            store,
            data_dir,
            shim_path,
            server_url: OnceLock::new(),
            routes: RwLock::new(Routes::default()),
            tasks: tokio_util::task::TaskTracker::new(),
            restore_errors: Mutex::new(HashMap::new()),
        }
    }

    /// The URL replicas use to reach the server (`CORTEX_SERVER_URL`); set once it listens.
    pub fn set_server_url(&self, url: String) {
        let _ = self.server_url.set(url);
    }

    pub fn get(&self, name: &str) -> Option<Arc<ApiRuntime>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .get(name)
            .cloned()
    }

    pub fn by_path(&self, path: &str) -> Option<Arc<ApiRuntime>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_path
            .get(path)
            .cloned()
    }

    /// Remembers why an API could not be started at server start-up (shown by `cortex get`).
    pub fn restore_failed(&self, name: &str, why: String) {
        self.restore_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), why);
    }

    /// Why an API is not running after a restart, if it could not be started.
    pub fn restore_error(&self, name: &str) -> Option<String> {
        self.restore_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The directory holding an API's replica logs.
    pub fn log_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("logs").join(name)
    }

    /// Starts replicas for `row`'s spec; replaces what ran before (the old replicas keep serving
    /// until the new ones are ready).
    pub async fn apply(
        &self,
        row: &ModelRow,
        spec: ApiSpec,
        project_dir: &Path,
    ) -> Result<(), StoreError> {
        let replica_id = format!(
            "{}-{}",
            spec.name,
            &row.spec_hash[..8.min(row.spec_hash.len())]
        );
        let log_path = self.log_dir(&spec.name).join(format!("{replica_id}.log"));
        let (rid, mid, hash, log) = (
            replica_id.clone(),
            row.id.clone(),
            row.spec_hash.clone(),
            log_path.display().to_string(),
        );
        self.store
            .call(move |conn| replicas::record(conn, &rid, &mid, &hash, &log))
            .await?;

        // Everything that can fail comes before the running generations are touched: a deploy
        // that fails leaves what serves as it was.
        let (plan, job_token) = self
            .plan_for(
                row,
                &spec,
                project_dir,
                replica_id.clone(),
                log_path.clone(),
            )
            .await?;
        // From here to the route switch nothing awaits.
        let old = self.get(&spec.name);
        let serving = old.as_ref().map(|old| self.keep_serving(old));
        let (current, previous, unused_token) = match serving {
            // Back to a spec whose replicas still serve (A → B → A while B was starting).
            Some(serving) if serving.snapshot().id == replica_id => (serving, None, true),
            serving => (self.engine.launch(plan), serving, false),
        };
        let metrics = match &old {
            Some(old) if old.spec_hash == row.spec_hash => old.metrics.clone(),
            _ => Arc::new(Metrics::default()),
        };
        let runtime = Arc::new(ApiRuntime {
            model_id: row.id.clone(),
            spec_hash: row.spec_hash.clone(),
            last_updated: row.updated_at,
            spec,
            current,
            previous: Mutex::new(previous),
            metrics,
            log_path,
        });
        let closed = {
            let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
            if routes.closed {
                true
            } else {
                if let Some(old) = &old {
                    routes.unroute(old);
                }
                routes
                    .by_path
                    .insert(runtime.spec.networking.endpoint.clone(), runtime.clone());
                routes
                    .by_name
                    .insert(runtime.spec.name.clone(), runtime.clone());
                false
            }
        };
        if closed {
            // The server stopped while this deploy ran: what it started must not outlive it.
            stop_all(&runtime).await;
            return Err(StoreError::Conflict(
                "the server is shutting down; deploy again once it is back".to_string(),
            ));
        }
        self.restore_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&runtime.spec.name);
        // One model, one live job token: the newest generation's (best effort: a token left
        // behind is still scoped to this model). A generation that keeps serving during an
        // update, or is reused, holds a revoked token until it is replaced; nothing accepts job
        // tokens yet (the Model Bazaar routes will, with a token per generation).
        let model_id = runtime.model_id.clone();
        let revoked = self
            .store
            .call(move |conn| {
                if unused_token {
                    users::revoke_job_token(conn, &job_token)
                } else {
                    users::revoke_job_tokens_except(conn, &model_id, &job_token)
                }
            })
            .await;
        if let Err(e) = revoked {
            tracing::warn!("cannot revoke old job tokens of {}: {e}", runtime.spec.name);
        }
        self.tasks.spawn(watch_phases(self.store.clone(), runtime));
        Ok(())
    }

    /// Of an API's running generations, the one to keep serving while a new one starts; the
    /// other (an update that was still starting) is stopped.
    fn keep_serving(&self, old: &ApiRuntime) -> Replica {
        let (keep, stop) = match old.take_previous() {
            Some(prev) if old.current.ready_addr().is_none() && prev.ready_addr().is_some() => {
                (prev, Some(old.current.clone()))
            }
            Some(prev) => (old.current.clone(), Some(prev)),
            None => (old.current.clone(), None),
        };
        if let Some(stop) = stop {
            self.tasks.spawn(async move { stop.stop().await });
        }
        keep
    }

    /// Everything a new replica of `spec` needs (environment, argv), and the new job token in
    /// its environment.
    async fn plan_for(
        &self,
        row: &ModelRow,
        spec: &ApiSpec,
        project_dir: &Path,
        replica_id: String,
        log_path: PathBuf,
    ) -> Result<(ReplicaPlan, String), StoreError> {
        let model_id = row.id.clone();
        let job_token = self
            .store
            .call(move |conn| users::issue_job_token(conn, &model_id))
            .await?;
        let dotenv = {
            let path = project_dir.join(".env");
            tokio::task::spawn_blocking(move || std::fs::read_to_string(path).ok())
                .await
                .ok()
                .flatten()
        };
        let plan = self.plan(
            spec,
            project_dir,
            dotenv.as_deref(),
            replica_id,
            log_path,
            job_token.clone(),
        );
        Ok((plan, job_token))
    }

    /// Stops an API's replicas and drops its routes. Returns false when it was not running.
    pub async fn remove(&self, name: &str) -> bool {
        let runtime = {
            let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
            let runtime = routes.by_name.remove(name);
            if let Some(rt) = &runtime {
                routes.unroute(rt);
            }
            runtime
        };
        let Some(runtime) = runtime else {
            return false;
        };
        stop_all(&runtime).await;
        true
    }

    /// Stops every replica (server shutdown), and waits for the stops and watchers it spawned.
    pub async fn shutdown(&self) {
        let all: Vec<Arc<ApiRuntime>> = {
            let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
            routes.closed = true;
            routes.by_path.clear();
            routes.by_name.drain().map(|(_, rt)| rt).collect()
        };
        futures_util::future::join_all(all.iter().map(|rt| stop_all(rt))).await;
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn plan(
        &self,
        spec: &ApiSpec,
        project_dir: &Path,
        dotenv: Option<&str>,
        replica_id: String,
        log_path: PathBuf,
        job_token: String,
    ) -> ReplicaPlan {
        let mut env: Vec<(String, String)> = Vec::new();
        if let Some(text) = dotenv {
            env.extend(runtime::dotenv::parse(text));
        }
        env.extend(
            spec.predictor
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let project = project_dir.display().to_string();
        env.extend([
            ("CORTEX_API_NAME".to_string(), spec.name.clone()),
            ("CORTEX_PROJECT_DIR".to_string(), project.clone()),
            ("CORTEX_JOB_TOKEN".to_string(), job_token),
            (
                "CORTEX_SERVER_URL".to_string(),
                self.server_url.get().cloned().unwrap_or_default(),
            ),
            ("PYTHONUNBUFFERED".to_string(), "1".to_string()),
            (
                "CORTEX_THREADS_PER_PROCESS".to_string(),
                spec.predictor.threads_per_process.to_string(),
            ),
            (
                "CORTEX_PROCESSES_PER_REPLICA".to_string(),
                spec.predictor.processes_per_replica.to_string(),
            ),
            (
                "CORTEX_VENVS_DIR".to_string(),
                self.data_dir.join("venvs").display().to_string(),
            ),
        ]);
        let mut python_path = vec![project.clone()];
        if let Some(extra) = &spec.predictor.python_path {
            python_path.push(project_dir.join(extra).display().to_string());
        }
        // A PYTHONPATH from .env or the spec's env extends ours rather than replacing it.
        let user_paths: Vec<String> = env
            .iter()
            .filter(|(k, _)| k == "PYTHONPATH")
            .map(|(_, v)| v.clone())
            .collect();
        env.retain(|(k, _)| k != "PYTHONPATH");
        python_path.extend(user_paths.into_iter().rev().take(1));
        if let Ok(existing) = std::env::var("PYTHONPATH") {
            python_path.push(existing);
        }
        env.push(("PYTHONPATH".to_string(), python_path.join(":")));
        let argv = match spec.predictor.kind {
            PredictorType::Python => {
                env.push((
                    "CORTEX_PREDICTOR_PATH".to_string(),
                    spec.predictor.path.clone().unwrap_or_default(),
                ));
                env.push((
                    "CORTEX_PREDICTOR_CONFIG".to_string(),
                    serde_json::Value::Object(spec.predictor.config.clone()).to_string(),
                ));
                vec![
                    runtime::python_interpreter(),
                    "-u".to_string(),
                    self.shim_path.display().to_string(),
                ]
            }
            PredictorType::Command => spec.predictor.command.clone().unwrap_or_default(),
        };
        ReplicaPlan {
            api: spec.name.clone(),
            replica_id,
            argv,
            cwd: project_dir.to_path_buf(),
            env,
            // The shim serves on the socket it is handed; a command binds its port itself.
            takes_socket: spec.predictor.kind == PredictorType::Python,
            log_path,
        }
    }
}

async fn stop_all(runtime: &ApiRuntime) {
    runtime.stop_previous().await;
    runtime.current.stop().await;
}

/// Follows the latest replicas of an API: once they are ready the previous generation stops
/// and the model is `complete`; when they fail it is `failed`.
async fn watch_phases(store: Store, runtime: Arc<ApiRuntime>) {
    let mut phases = runtime.current.phases();
    loop {
        let phase = *phases.borrow_and_update();
        let status = match phase {
            ReplicaPhase::Ready => Some(DeployStatus::Complete),
            ReplicaPhase::Failed => Some(DeployStatus::Failed),
            ReplicaPhase::Stopped => return,
            ReplicaPhase::Initializing | ReplicaPhase::Restarting => None,
        };
        // Recorded before the previous generation is stopped (which can take its grace period):
        // a deploy made meanwhile must find this spec recorded as the one that serves.
        if let Some(status) = status {
            let (id, hash) = (runtime.model_id.clone(), runtime.spec_hash.clone());
            let result = store
                .call(move |conn| {
                    if status == DeployStatus::Complete {
                        models::mark_serving(conn, &id, &hash)?;
                    }
                    models::set_status_for_spec(conn, &id, &hash, status)
                })
                .await;
            if let Err(e) = result {
                tracing::warn!("cannot record the status of {}: {e}", runtime.spec.name);
            }
        }
        if phase == ReplicaPhase::Ready {
            runtime.stop_previous().await;
        }
        if phases.changed().await.is_err() {
            return;
        }
    }
}
