//! Deployments: makes a stored API version run and serve, and stops it.
//!
//! `apply` plans the new version (`runtime::plan`), gives it a job token (`tokens`), starts
//! its replica set through the engine, switches the route table to it while older versions
//! keep serving, and watches its phases (`status`) until it is ready; then the older versions
//! are retired. Nothing here is on the prediction hot path: the gateway reads the route table.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::live_api::LiveApi;
use super::metrics::Metrics;
use super::replica_set::{ReplicaSet, ReplicaSets};
use super::route_table::RouteTable;
use super::status::{self, RestoreErrors};
use super::tokens::Tokens;
use crate::engine::{Engine, Purpose, ReplicaLogs, ReplicaPhase};
use crate::runtime::plan::{self, PlanContext};
use crate::spec::ApiSpec;
use crate::store::{models, replicas, ModelRow, Store, StoreError};

/// How long a replica gets to finish in-flight work after it is asked to stop.
const REPLICA_STOP_GRACE: Duration = Duration::from_secs(5);

/// How many replicas a version of `spec` runs. The one place that decides it: one per
/// version today; the autoscaler will decide it from the spec's `autoscaling` and the load.
/// A BatchAPI runs none: its jobs start their own workers from the version's plan.
fn desired_replicas(spec: &ApiSpec) -> u32 {
    match spec.kind {
        crate::spec::ApiKind::RealtimeAPI => 1,
        crate::spec::ApiKind::BatchAPI => 0,
    }
}

/// All live APIs of this server.
pub struct Deployments {
    engine: Arc<dyn Engine>,
    store: Store,
    tokens: Arc<Tokens>,
    data_dir: PathBuf,
    shim_path: PathBuf,
    server_url: OnceLock<String>,
    routes: RouteTable<LiveApi>,
    /// Background work (replica stops, phase watchers) that shutdown waits for.
    tasks: tokio_util::task::TaskTracker,
    /// Why APIs could not be started again at server start-up, by name.
    restore_errors: RestoreErrors,
}

impl Deployments {
    pub fn new(
        engine: Arc<dyn Engine>,
        store: Store,
        tokens: Arc<Tokens>,
        data_dir: PathBuf,
        shim_path: PathBuf,
    ) -> Self {
        Deployments {
            engine,
            store,
            tokens,
            data_dir,
            shim_path,
            server_url: OnceLock::new(),
            routes: RouteTable::default(),
            tasks: tokio_util::task::TaskTracker::new(),
            restore_errors: RestoreErrors::default(),
        }
    }

    /// The URL replicas use to reach the server (`CORTEX_SERVER_URL`); set once it listens.
    pub fn set_server_url(&self, url: String) {
        let _ = self.server_url.set(url);
    }

    /// The live API named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LiveApi>> {
        self.routes.get(name)
    }

    /// The live API that serves `path`.
    pub fn by_path(&self, path: &str) -> Option<Arc<LiveApi>> {
        self.routes.by_path(path)
    }

    /// Remembers why an API could not be started at server start-up (shown by `cortex get`).
    pub fn restore_failed(&self, name: &str, why: String) {
        self.restore_errors.set(name, why);
    }

    /// Why an API is not running after a restart, if it could not be started.
    pub fn restore_error(&self, name: &str) -> Option<String> {
        self.restore_errors.get(name)
    }

    /// The logs of one of `api`'s replicas, running or not.
    pub fn replica_logs(&self, api: &str, replica_id: &str) -> Arc<dyn ReplicaLogs> {
        self.engine.logs(api, replica_id)
    }

    /// Forgets the logs of every replica `api` ever ran.
    pub async fn remove_logs(&self, api: &str) {
        self.engine.remove_logs(api).await;
    }

    /// Reads every live API's access from the database again (after a change that touched
    /// many, such as a deleted team).
    pub async fn refresh_access(&self) -> Result<(), StoreError> {
        for row in self.store.call(|c| models::list(c)).await? {
            if let Some(live) = self.get(&row.name) {
                live.set_access((&row).into());
            }
        }
        Ok(())
    }

    /// Starts replicas for `row`'s spec; replaces what ran before (the old replicas keep serving
    /// until the new ones are ready).
    pub async fn apply(
        &self,
        row: &ModelRow,
        spec: ApiSpec,
        project_dir: &Path,
    ) -> Result<(), StoreError> {
        let name = spec.name.clone();
        let desired = desired_replicas(&spec);
        // Everything that can fail comes before the running versions are touched: a deploy
        // that fails leaves what serves as it was.
        let (deployment, job_token) = self.tokens.issue_job_token(&row.id).await?;
        let dotenv = read_dotenv(project_dir).await;
        let template = plan::plan(
            &self.plan_context(),
            plan::Version {
                spec: &spec,
                project_dir,
                dotenv: dotenv.as_deref(),
                job_token: &job_token,
                model_id: &row.id,
            },
            String::new(),
            Purpose::Realtime,
        );

        // From here to the route switch nothing awaits.
        let old = self.get(&name);
        let serving = old.as_ref().map(|old| self.keep_serving(old));
        let (newest, older, unused_token) = match serving {
            // Back to a version whose replicas still serve (A → B → A while B was starting).
            Some(serving) if serving.version() == row.spec_hash => (serving, Vec::new(), true),
            serving => {
                let set = Arc::new(ReplicaSet::new(
                    &name,
                    &row.spec_hash,
                    (deployment, job_token.clone()),
                    template,
                ));
                let surplus = set.scale_to(desired, self.engine.as_ref());
                debug_assert!(surplus.is_empty());
                (set, serving.into_iter().collect(), false)
            }
        };
        let metrics = match &old {
            Some(old) if old.spec_hash == row.spec_hash => old.metrics.clone(),
            _ => Arc::new(Metrics::default()),
        };
        let live = Arc::new(LiveApi {
            model_id: row.id.clone(),
            spec_hash: row.spec_hash.clone(),
            last_updated: row.updated_at,
            spec,
            versions: ReplicaSets::new(newest, older),
            metrics,
            extra_path: row.deployment_name.as_ref().map(|n| format!("/{n}")),
            access: std::sync::RwLock::new(row.into()),
        });
        if self.routes.insert(live.clone()).is_err() {
            // The server stopped while this deploy ran: what it started must not outlive it.
            for set in live.versions.retire_all() {
                retire(&self.tokens, &set).await;
            }
            return Err(StoreError::Conflict(
                "the server is shutting down; deploy again once it is back".to_string(),
            ));
        }
        self.restore_errors.clear(&name);
        // Which replicas run this version, so their logs stay reachable when nothing runs.
        let replica_ids: Vec<String> = live
            .versions
            .newest()
            .members()
            .iter()
            .map(|m| m.id().to_string())
            .collect();
        let (mid, hash) = (row.id.clone(), row.spec_hash.clone());
        let recorded = self
            .store
            .call(move |conn| replicas::record(conn, &mid, &hash, &replica_ids))
            .await;
        if let Err(e) = recorded {
            tracing::warn!("cannot record the replicas of {name}: {e}");
        }
        if unused_token {
            // Back to a version that serves: it keeps its deployment (number, token, logs).
            let (id, reused) = (row.id.clone(), live.versions.newest().deployment());
            let result = self
                .store
                .call(move |conn| models::set_deployment(conn, &id, reused))
                .await
                .and(self.tokens.revoke_job_token(&job_token).await);
            if let Err(e) = result {
                tracing::warn!("cannot go back to deployment {reused} of {name}: {e}");
            }
        }
        if live.is_batch() {
            // Nothing to wait for: the API takes jobs from now on.
            for older in live.versions.retire_older() {
                retire(&self.tokens, &older).await;
            }
            status::record(&self.store, &live, crate::store::DeployStatus::Complete).await;
        } else {
            self.tasks
                .spawn(watch_newest(self.store.clone(), self.tokens.clone(), live));
        }
        Ok(())
    }

    fn plan_context(&self) -> PlanContext {
        PlanContext::from_env(
            self.server_url.get().cloned().unwrap_or_default(),
            self.shim_path.clone(),
            &self.data_dir,
        )
    }

    /// Of an API's serving versions, the one to keep serving while a new one starts: the
    /// newest, unless it is not ready and an older one is. The others (an update that was still
    /// starting) are stopped.
    fn keep_serving(&self, old: &LiveApi) -> Arc<ReplicaSet> {
        let newest = old.versions.newest().clone();
        let mut older = old.versions.retire_older().into_iter();
        let (keep, stop): (Arc<ReplicaSet>, Vec<Arc<ReplicaSet>>) = match older.next() {
            Some(prev) if !newest.is_ready() && prev.is_ready() => {
                (prev, std::iter::once(newest).chain(older).collect())
            }
            Some(prev) => (newest, std::iter::once(prev).chain(older).collect()),
            None => (newest, Vec::new()),
        };
        for set in stop {
            let tokens = self.tokens.clone();
            self.tasks.spawn(async move { retire(&tokens, &set).await });
        }
        keep
    }

    /// Stops an API's replicas and drops its routes. Returns false when it was not running.
    pub async fn remove(&self, name: &str) -> bool {
        let Some(live) = self.routes.remove(name) else {
            return false;
        };
        for set in live.versions.retire_all() {
            retire(&self.tokens, &set).await;
        }
        true
    }

    /// Repairs drift between the statuses in the database and what runs, every few seconds,
    /// until `shutdown` is cancelled. Each pass holds `changes`, the lock deploys and deletes
    /// hold, so a version being started is never taken for one that is gone.
    pub async fn reconcile_loop(
        self: Arc<Self>,
        changes: Arc<tokio::sync::Mutex<()>>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(reconcile_every()) => {}
                _ = shutdown.cancelled() => return,
            }
            let _changing = changes.lock().await;
            if let Err(e) = self.reconcile().await {
                tracing::warn!("cannot reconcile the deploy statuses: {e}");
            }
        }
    }

    /// One pass: each model's recorded status against its newest version's phase.
    async fn reconcile(&self) -> Result<(), StoreError> {
        for row in self.store.call(|c| models::list(c)).await? {
            let live = self.get(&row.name);
            let newest = live
                .as_ref()
                .filter(|live| live.spec_hash == row.spec_hash)
                .map(|live| status::set_phase(live.versions.newest()));
            // What runs is another version than the recorded one: not this pass's to judge.
            if live.is_some() && newest.is_none() {
                continue;
            }
            if let Some(repaired) = status::reconciled(row.deploy_status, newest) {
                // Only if nothing changed it since it was read.
                let (id, deployment, from) = (row.id.clone(), row.deployment, row.deploy_status);
                self.store
                    .call(move |c| {
                        models::compare_and_set_status(c, &id, deployment, from, repaired)
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// Stops every replica (server shutdown), and waits for the stops and watchers it spawned.
    /// Job tokens stay: the next start revokes them all before starting the APIs again.
    pub async fn shutdown(&self) {
        let sets: Vec<Arc<ReplicaSet>> = self
            .routes
            .close()
            .iter()
            .flat_map(|live| live.versions.retire_all())
            .collect();
        futures_util::future::join_all(sets.iter().map(|set| set.stop(REPLICA_STOP_GRACE))).await;
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// How often the reconcile loop compares the recorded statuses with what runs
/// (`CORTEX_RECONCILE_SECS` changes it).
fn reconcile_every() -> Duration {
    std::env::var("CORTEX_RECONCILE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(3), Duration::from_secs)
}

/// Takes a version out of service for good: its replicas stop and its job token is revoked.
async fn retire(tokens: &Tokens, set: &ReplicaSet) {
    set.stop(REPLICA_STOP_GRACE).await;
    if let Err(e) = tokens.revoke_job_token(set.job_token()).await {
        tracing::warn!("cannot revoke the job token of {}: {e}", set.id());
    }
}

/// The text of the project's `.env`, if it has one (read on a blocking thread).
async fn read_dotenv(project_dir: &Path) -> Option<String> {
    let path = project_dir.join(".env");
    tokio::task::spawn_blocking(move || std::fs::read_to_string(path).ok())
        .await
        .ok()
        .flatten()
}

/// Follows the newest version of an API: its status is recorded when it changes, and once it
/// is ready the older versions are retired. Members that join later are followed too.
async fn watch_newest(store: Store, tokens: Arc<Tokens>, live: Arc<LiveApi>) {
    let set = live.versions.newest().clone();
    let mut membership = set.membership();
    let mut recorded: Option<ReplicaPhase> = None;
    loop {
        membership.borrow_and_update();
        // Subscribed before the phase is read, so no change between the two is missed.
        let mut phases: Vec<_> = set.members().iter().map(|m| m.phases()).collect();
        let phase = status::set_phase(&set);
        if phase == ReplicaPhase::Stopped {
            return;
        }
        if recorded != Some(phase) {
            recorded = Some(phase);
            // Recorded before the older versions are stopped (which can take their grace
            // period): a deploy made meanwhile must find this version recorded as serving.
            if let Some(deploy_status) = status::deploy_status(phase) {
                status::record(&store, &live, deploy_status).await;
            }
            if phase == ReplicaPhase::Ready {
                for older in live.versions.retire_older() {
                    retire(&tokens, &older).await;
                }
            }
        }
        let any_phase_change = async {
            if phases.is_empty() {
                return std::future::pending().await;
            }
            let changes = phases.iter_mut().map(|rx| {
                Box::pin(async move {
                    // A member whose handle is gone says nothing more.
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                })
            });
            futures_util::future::select_all(changes).await;
        };
        tokio::select! {
            _ = any_phase_change => {}
            changed = membership.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
