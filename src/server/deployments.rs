//! Deployments: makes a stored API version run and serve, and stops it.
//!
//! `apply` plans the new version (`runtime::plan`), gives it a job token (`tokens`), starts
//! its replica set through the engine, switches the route table to it while older versions
//! keep serving, and watches its phases (`status`) until it is ready; then the older versions
//! are retired. Nothing here is on the prediction hot path: the gateway reads the route table.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::live_api::LiveApi;
use super::metrics::Metrics;
use super::replica_set::{drain_in_background, ReplicaSet, ReplicaSets};
use super::rollout;
use super::route_table::RouteTable;
use super::scaler;
use super::splitter::Splitter;
use super::status::{self, RestoreErrors};
use super::tokens::Tokens;
use crate::engine::{Engine, Purpose, ReplicaLogs, ReplicaPhase};
use crate::runtime::plan::{self, PlanContext};
use crate::spec::ApiSpec;
use crate::store::{models, replicas, ModelRow, Store, StoreError};

/// How long a replica gets to finish in-flight work after it is asked to stop.
const REPLICA_STOP_GRACE: Duration = Duration::from_secs(5);

/// How many replicas a new version of `spec` runs once it is rolled out: as many as the
/// version it replaces ran (within the new bounds), or `init_replicas` for a first deploy
/// (at least one: a deploy shows whether the API works). The autoscaler decides from then
/// on. A BatchAPI runs none: its jobs start their own workers from the version's plan.
fn desired_replicas(spec: &ApiSpec, running: Option<u32>) -> u32 {
    match (&spec.kind, &spec.autoscaling) {
        (crate::spec::ApiKind::BatchAPI, _) => 0,
        (_, None) => 1,
        (_, Some(a)) => running
            .filter(|n| *n > 0)
            .unwrap_or(a.init_replicas)
            .clamp(a.min_replicas.max(1), a.max_replicas.max(1)),
    }
}

/// All live APIs of this server.
pub struct Deployments {
    engine: Arc<dyn Engine>,
    store: Store,
    tokens: Arc<Tokens>,
    /// What every replica runs with: the shim, its interpreter, where virtualenvs go.
    runtime: crate::runtime::ReplicaRuntime,
    server_url: OnceLock<String>,
    routes: RouteTable<LiveApi>,
    /// Background work (replica stops, phase watchers) that shutdown waits for.
    tasks: tokio_util::task::TaskTracker,
    /// Why APIs could not be started again at server start-up, by name.
    restore_errors: RestoreErrors,
    /// The pythons projects may ask for (`conda-packages.txt`).
    interpreters: Arc<super::interpreters::Interpreters>,
}

impl Deployments {
    pub fn new(
        engine: Arc<dyn Engine>,
        store: Store,
        tokens: Arc<Tokens>,
        runtime: crate::runtime::ReplicaRuntime,
        interpreters: Arc<super::interpreters::Interpreters>,
    ) -> Self {
        Deployments {
            engine,
            store,
            tokens,
            runtime,
            interpreters,
            server_url: OnceLock::new(),
            routes: RouteTable::default(),
            tasks: tokio_util::task::TaskTracker::new(),
            restore_errors: RestoreErrors::default(),
        }
    }

    /// The pythons projects may ask for.
    pub fn interpreters(&self) -> &Arc<super::interpreters::Interpreters> {
        &self.interpreters
    }

    /// The URL replicas use to reach the server (`CORTEX_SERVER_URL`); set once it listens.
    pub fn set_server_url(&self, url: String) {
        let _ = self.server_url.set(url);
    }

    /// The live API named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LiveApi>> {
        self.routes.get(name)
    }

    /// Spare python interpreters of the engine, ready and starting (`None`: it keeps none).
    pub fn spare_interpreters(&self) -> Option<(usize, usize)> {
        self.engine.spare_interpreters()
    }

    /// Every live API, in no particular order.
    pub fn all(&self) -> Vec<Arc<LiveApi>> {
        self.routes.all()
    }

    /// The live API that serves `path`.
    pub fn by_path(&self, path: &str) -> Option<Arc<LiveApi>> {
        self.routes.by_path(path)
    }

    /// The live RealtimeAPI that serves every path under `/<segment>/` (its model id, or its
    /// Model Bazaar `deployment_name`).
    pub fn by_prefix(&self, segment: &str) -> Option<Arc<LiveApi>> {
        self.routes.by_prefix(segment)
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
        let Some(mut predictor) = spec.predictor.clone() else {
            return self.apply_splitter(row, spec).await;
        };
        // Everything that can fail comes before the running versions are touched: a deploy
        // that fails leaves what serves as it was.
        let (deployment, job_token) = self.tokens.issue_job_token(&row.id).await?;
        // A copy saved by someone who may not see the base's secrets runs without them: no
        // `.env` and no `predictor.env` (its saved spec has none; this holds whatever it says).
        let dotenv = match row.inherits_env {
            true => read_dotenv(project_dir).await,
            false => {
                predictor.env.clear();
                None
            }
        };
        // A python it asks for that is gone since the deploy's checks: the start says so.
        let python = super::project_python::resolve(project_dir, &self.interpreters)
            .await
            .unwrap_or_else(|why| {
                tracing::warn!("{name}: {why}");
                None
            });
        let template = plan::plan(
            &self.plan_context(),
            plan::Version {
                spec: &spec,
                predictor: &predictor,
                project_dir,
                dotenv: dotenv.as_deref(),
                python: python.as_deref(),
                prepares: prepares(project_dir).await,
                version: &row.spec_hash,
                job_token: &job_token,
                model_id: &row.id,
            },
            String::new(),
            Purpose::Realtime,
        );

        // From here to the route switch nothing awaits.
        let old = self.get(&name);
        // In the middle of an update the newest version's size is a step, not the size.
        let running = old.as_ref().map(|o| {
            if o.has_older() {
                o.target
            } else {
                o.versions.newest().desired()
            }
        });
        let target = desired_replicas(&spec, running);
        let freed = old
            .as_ref()
            .map(|o| o.versions.freed().clone())
            .unwrap_or_default();
        let mut serving = old
            .as_ref()
            .map(|old| self.carry_over(old))
            .unwrap_or_default();
        let back_to = serving.iter().position(|s| s.version() == row.spec_hash);
        let (newest, older, unused_token) = match back_to {
            // Back to a version whose replicas still serve (A → B → A while B was starting);
            // the others roll out as it becomes ready.
            Some(i) => {
                let back = serving.remove(i);
                if serving.is_empty() {
                    // Nothing older to roll from: it takes the whole size at once (a partial
                    // update left it short, or the spec's size changed).
                    let surplus = back.scale_to(target.max(1), self.engine.as_ref());
                    let drain = spec.networking.timeout.to_std();
                    drain_in_background(&self.tasks, surplus, drain, REPLICA_STOP_GRACE);
                }
                (back, serving, true)
            }
            None => {
                let set = Arc::new(ReplicaSet::new(
                    &name,
                    &row.spec_hash,
                    (deployment, job_token.clone()),
                    template,
                    freed,
                ));
                // An update starts as many as its first step allows; `follow_newest` takes
                // it on from there.
                let first = if serving.is_empty() {
                    target
                } else {
                    let strategy = spec.update_strategy.clone().unwrap_or_default();
                    let counts = rollout::Counts {
                        target,
                        new_started: 0,
                        new_ready: 0,
                        old_members: serving.iter().map(|s| s.members().len() as u32).sum(),
                        old_ready: serving.iter().map(|s| ready_members(s)).sum(),
                    };
                    rollout::step(counts, rollout::allowance(&strategy, target)).new_members
                };
                // A BatchAPI runs nothing (and reserves no compute) until a job starts workers.
                let size = if spec.kind == crate::spec::ApiKind::BatchAPI {
                    0
                } else {
                    first.max(1)
                };
                let surplus = set.scale_to(size, self.engine.as_ref());
                debug_assert!(surplus.is_empty());
                (set, serving, false)
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
            queue: Default::default(),
            ended: Default::default(),
            splitter: None,
            target,
        });
        let replaced = self.routes.insert(live.clone());
        if let Ok(Some(replaced)) = &replaced {
            replaced.ended.cancel();
        }
        if replaced.is_err() {
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
        record_replicas(&self.store, &live).await;
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
            let follow = Follow {
                store: self.store.clone(),
                tokens: self.tokens.clone(),
                engine: self.engine.clone(),
                tasks: self.tasks.clone(),
                target,
            };
            if scaler::scales(&live) {
                let scaling = scaler::Scaling {
                    engine: self.engine.clone(),
                    store: self.store.clone(),
                    tasks: self.tasks.clone(),
                    grace: REPLICA_STOP_GRACE,
                };
                self.tasks.spawn(scaler::run(live.clone(), scaling));
            }
            self.tasks.spawn(follow_newest(follow, live));
        }
        Ok(())
    }

    /// Makes a TrafficSplitter live: it runs nothing; the gateway passes each request to one of
    /// its APIs. What ran under its name before (a kind changed) is stopped.
    async fn apply_splitter(&self, row: &ModelRow, spec: ApiSpec) -> Result<(), StoreError> {
        let set = Arc::new(ReplicaSet::idle(&spec.name, &row.spec_hash));
        let live = Arc::new(LiveApi {
            model_id: row.id.clone(),
            spec_hash: row.spec_hash.clone(),
            last_updated: row.updated_at,
            splitter: Some(Splitter::new(spec.apis.clone())),
            spec,
            versions: ReplicaSets::new(set, Vec::new()),
            metrics: Arc::new(Metrics::default()),
            extra_path: row.deployment_name.as_ref().map(|n| format!("/{n}")),
            access: std::sync::RwLock::new(row.into()),
            queue: Default::default(),
            ended: Default::default(),
            target: 0,
        });
        let replaced = self.routes.insert(live.clone()).map_err(|_| {
            StoreError::Conflict(
                "the server is shutting down; deploy again once it is back".to_string(),
            )
        })?;
        if let Some(replaced) = replaced {
            replaced.ended.cancel();
            for set in replaced.versions.retire_all() {
                retire(&self.tokens, &set).await;
            }
        }
        self.restore_errors.clear(&live.spec.name);
        status::record(&self.store, &live, crate::store::DeployStatus::Complete).await;
        Ok(())
    }

    fn plan_context(&self) -> PlanContext {
        PlanContext::from_env(
            self.server_url.get().cloned().unwrap_or_default(),
            self.runtime.shim_path.clone(),
            self.runtime.venvs_dir.clone(),
            self.runtime.python.clone(),
            self.runtime.conda.clone(),
        )
    }

    /// Of an API's running versions, the ones that keep serving while a new one rolls out,
    /// newest first: every version with a ready replica (a redeploy in the middle of an update
    /// takes both the old and the half-rolled-out version along, and retires them as the new
    /// one becomes ready), or the newest when none is ready. The others are stopped.
    fn carry_over(&self, old: &LiveApi) -> Vec<Arc<ReplicaSet>> {
        let mut sets = vec![old.versions.newest().clone()];
        sets.extend(old.versions.retire_older());
        let (keep, stop) = carried_sets(sets);
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
        live.ended.cancel();
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
            if let Some(repaired) = status::reconciled(row.deploy_status, newest, row.reported()) {
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
            .flat_map(|live| {
                live.ended.cancel();
                live.versions.retire_all()
            })
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

/// How long a retired version's job token still reads its status after its replicas stopped
/// (`CORTEX_JOB_TOKEN_GRACE_SECS` changes it): a job's shutdown hook asks whether it was
/// undeployed. Its writes are refused (409) meanwhile; afterwards it is not valid (401).
fn job_token_grace() -> Duration {
    std::env::var("CORTEX_JOB_TOKEN_GRACE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs)
}

/// Takes a version out of service for good: its replicas stop, and its job token ends a short
/// grace later.
async fn retire(tokens: &Tokens, set: &ReplicaSet) {
    set.stop(REPLICA_STOP_GRACE).await;
    if let Err(e) = tokens
        .retire_job_token(set.job_token(), job_token_grace())
        .await
    {
        tracing::warn!("cannot revoke the job token of {}: {e}", set.id());
    }
}

/// Whether the project has what a python worker prepares before it starts: a
/// `requirements.txt` or a `dependencies.sh`.
async fn prepares(project_dir: &Path) -> bool {
    let dir = project_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        ["requirements.txt", "dependencies.sh", "conda-packages.txt"]
            .iter()
            .any(|f| dir.join(f).is_file())
    })
    .await
    .unwrap_or(false)
}

/// The text of the project's `.env`, if it has one (read on a blocking thread).
async fn read_dotenv(project_dir: &Path) -> Option<String> {
    let path = project_dir.join(".env");
    tokio::task::spawn_blocking(move || std::fs::read_to_string(path).ok())
        .await
        .ok()
        .flatten()
}

/// Follows the newest version of an API until it stops or the API is replaced: its status
/// is recorded when it changes, an update is rolled out step by step (`rollout`), and the
/// older versions are retired once they have no member left.
async fn follow_newest(ctx: Follow, live: Arc<LiveApi>) {
    let set = live.versions.newest().clone();
    let mut membership = set.membership();
    let mut recorded: Option<ReplicaPhase> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        membership.borrow_and_update();
        // Subscribed before the phase is read, so no change between the two is missed.
        let mut phases: Vec<_> = set.members().iter().map(|m| m.phases()).collect();
        let phase = status::set_phase(&set);
        if phase == ReplicaPhase::Stopped || live.ended.is_cancelled() {
            return;
        }
        if recorded != Some(phase) {
            recorded = Some(phase);
            if let Some(deploy_status) = status::deploy_status(phase) {
                status::record(&ctx.store, &live, deploy_status).await;
            }
        }
        if live.has_older() {
            ctx.roll(&live).await;
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
            // While rolling out, old members' phases matter too.
            _ = tick.tick(), if live.has_older() => {}
            _ = live.ended.cancelled() => return,
        }
    }
}

/// What following a version needs.
#[derive(Clone)]
struct Follow {
    store: Store,
    tokens: Arc<Tokens>,
    engine: Arc<dyn Engine>,
    tasks: tokio_util::task::TaskTracker,
    /// The replicas the update ends with.
    target: u32,
}

impl Follow {
    /// One step of the update: starts new members as room allows, takes old ones out
    /// (drained, then stopped), and retires the older versions once they are empty.
    async fn roll(&self, live: &LiveApi) {
        let newest = live.versions.newest();
        let older = live.versions.older();
        let counts = rollout::Counts {
            target: self.target,
            new_started: newest.desired(),
            new_ready: ready_members(newest),
            old_members: older.iter().map(|s| s.members().len() as u32).sum(),
            old_ready: older.iter().map(|s| ready_members(s)).sum(),
        };
        let strategy = live.spec.update_strategy.clone().unwrap_or_default();
        let step = rollout::step(counts, rollout::allowance(&strategy, self.target));
        let drain = live.spec.networking.timeout.to_std();
        if step.new_members > newest.desired() {
            let surplus = newest.scale_to(step.new_members, self.engine.as_ref());
            drain_in_background(&self.tasks, surplus, drain, REPLICA_STOP_GRACE);
            record_replicas(&self.store, live).await;
        }
        // The oldest members go first.
        let mut left = step.remove_old;
        for set in older.iter().rev() {
            let have = set.members().len() as u32;
            let take = left.min(have);
            if take > 0 {
                let taken = set.scale_to(have - take, self.engine.as_ref());
                drain_in_background(&self.tasks, taken, drain, REPLICA_STOP_GRACE);
                left -= take;
            }
        }
        if older.iter().all(|s| s.members().is_empty()) {
            for set in live.versions.retire_older() {
                retire(&self.tokens, &set).await;
            }
        }
    }
}

/// Splits an API's versions (newest first) into those carried into an update and those to
/// stop: see [`Deployments::carry_over`].
fn carried_sets(sets: Vec<Arc<ReplicaSet>>) -> (Vec<Arc<ReplicaSet>>, Vec<Arc<ReplicaSet>>) {
    if sets.iter().any(|s| s.is_ready()) {
        sets.into_iter().partition(|s| s.is_ready())
    } else {
        let mut sets = sets.into_iter();
        (sets.next().into_iter().collect(), sets.collect())
    }
}

/// How many of a set's members are ready.
fn ready_members(set: &ReplicaSet) -> u32 {
    set.members()
        .iter()
        .filter(|m| m.ready_addr().is_some())
        .count() as u32
}

/// Records which replicas run the API's newest version, so their logs stay reachable when
/// nothing runs.
async fn record_replicas(store: &Store, live: &LiveApi) {
    let ids: Vec<String> = live
        .versions
        .newest()
        .members()
        .iter()
        .map(|m| m.id().to_string())
        .collect();
    let (mid, hash, name) = (
        live.model_id.clone(),
        live.spec_hash.clone(),
        &live.spec.name,
    );
    let recorded = store
        .call(move |conn| replicas::record(conn, &mid, &hash, &ids))
        .await;
    if let Err(e) = recorded {
        tracing::warn!("cannot record the replicas of {name}: {e}");
    }
}
