//! A deploy made live: the new version planned, the replica sets that serve while it rolls
//! out chosen, the route switched, and the version followed from then on.
//!
//! Everything that can fail comes before the running versions are touched: a deploy that
//! fails leaves what serves as it was. From choosing the sets to the route switch nothing
//! awaits.

use std::path::Path;
use std::sync::Arc;

use super::follow::{follow_newest, ready_members, record_replicas, Follow};
use super::{retire, Deployments, REPLICA_STOP_GRACE};
use crate::engine::{Purpose, ReplicaPlan};
use crate::runtime::plan::{self, PlanContext};
use crate::server::live_api::LiveApi;
use crate::server::metrics::Metrics;
use crate::server::replica_set::{drain_in_background, ReplicaSet, ReplicaSets};
use crate::server::splitter::Splitter;
use crate::server::{rollout, scaler, status};
use crate::spec::ApiSpec;
use crate::store::model_status;
use crate::store::{ModelRow, StoreError};

/// A new version, planned: its deployment number, its job token and what its replicas run.
struct Planned {
    deployment: i64,
    job_token: String,
    template: ReplicaPlan,
}

/// Which deployment a version that starts is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// A deploy: the model's next deployment.
    Next,
    /// A version started again by a restart of the server: the deployment it was, which
    /// goes on (its number, the status its job reported, its messages).
    Resumed(i64),
}

/// The replica sets an API serves from once a deploy is live.
struct Chosen {
    newest: Arc<ReplicaSet>,
    older: Vec<Arc<ReplicaSet>>,
    /// The planned version's job token when the deploy went back to a version that still
    /// serves (it keeps its own): revoked once the route has switched.
    unused_token: Option<String>,
}

impl Deployments {
    /// Starts replicas for `row`'s spec; replaces what ran before (the old replicas keep serving
    /// until the new ones are ready).
    pub async fn apply(
        &self,
        row: &ModelRow,
        spec: ApiSpec,
        (project_dir, deployment): (&Path, Deployment),
    ) -> Result<(), StoreError> {
        let Some(predictor) = spec.predictor.clone() else {
            return self.apply_splitter(row, spec).await;
        };
        let planned = self
            .plan_version(row, &spec, predictor, (project_dir, deployment))
            .await?;
        let old = self.get(&spec.name);
        let target = desired_replicas(&spec, old.as_deref().map(running_size));
        let chosen = self.choose_sets(row, &spec, old.as_deref(), target, planned);
        let metrics = match &old {
            Some(old) if old.spec_hash == row.spec_hash => old.metrics.clone(),
            _ => Arc::new(Metrics::default()),
        };
        let versions = ReplicaSets::new(chosen.newest, chosen.older);
        let live = Arc::new(live_api(row, spec, versions, metrics, target));
        self.switch_route(&live).await?;
        self.restore_errors.clear(&live.spec.name);
        record_replicas(&self.store, &live).await;
        if !live.is_batch() {
            // Job workers' logs are the jobs' (kept until the API goes); a realtime API keeps
            // those of the versions it runs.
            let mut sets = live.versions.older();
            sets.push(live.versions.newest().clone());
            let sets = sets.iter().map(|s| s.id().to_string()).collect();
            self.engine.prune_logs(&live.spec.name, sets).await;
        }
        if let Some(token) = chosen.unused_token {
            self.keep_deployment(row, &live, &token).await;
        }
        self.follow(live, target).await;
        Ok(())
    }

    /// The new version's job token and plan. A copy saved by someone who may not see the
    /// base's secrets runs without them: no `.env` and no `predictor.env` (its saved spec has
    /// none; this holds whatever it says).
    async fn plan_version(
        &self,
        row: &ModelRow,
        spec: &ApiSpec,
        mut predictor: crate::spec::Predictor,
        (project_dir, deployment): (&Path, Deployment),
    ) -> Result<Planned, StoreError> {
        let (deployment, job_token) = match deployment {
            Deployment::Next => self.tokens.issue_job_token(&row.id).await?,
            Deployment::Resumed(n) => (n, self.tokens.reissue_job_token(&row.id, n).await?),
        };
        let dotenv = match row.inherits_env {
            true => read_dotenv(project_dir).await,
            false => {
                predictor.env.clear();
                None
            }
        };
        // A python it asks for that is gone since the deploy's checks: the start says so.
        let python = crate::server::project_python::resolve(project_dir, &self.interpreters)
            .await
            .unwrap_or_else(|why| {
                tracing::warn!("{}: {why}", spec.name);
                None
            });
        let template = plan::plan(
            &self.plan_context(),
            plan::Version {
                spec,
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
        Ok(Planned {
            deployment,
            job_token,
            template,
        })
    }

    /// The sets that serve once the deploy is live: back to a version whose replicas still
    /// serve (A → B → A while B was starting; the others roll out as it becomes ready), or a
    /// new set started at the update's first step, beside the versions carried over.
    fn choose_sets(
        &self,
        row: &ModelRow,
        spec: &ApiSpec,
        old: Option<&LiveApi>,
        target: u32,
        planned: Planned,
    ) -> Chosen {
        let freed = old.map(|o| o.versions.freed().clone()).unwrap_or_default();
        let mut serving = old.map(|old| self.carry_over(old)).unwrap_or_default();
        if let Some(i) = serving.iter().position(|s| s.version() == row.spec_hash) {
            let back = serving.remove(i);
            if serving.is_empty() {
                // Nothing older to roll from: it takes the whole size at once (a partial
                // update left it short, or the spec's size changed).
                let surplus = back.scale_to(target.max(1), self.engine.as_ref());
                let drain = spec.networking.timeout.to_std();
                drain_in_background(&self.tasks, surplus, drain, REPLICA_STOP_GRACE);
            }
            return Chosen {
                newest: back,
                older: serving,
                unused_token: Some(planned.job_token),
            };
        }
        let set = Arc::new(ReplicaSet::new(
            &spec.name,
            &row.spec_hash,
            (planned.deployment, planned.job_token),
            planned.template,
            freed,
        ));
        // A BatchAPI runs nothing (and reserves no compute) until a job starts workers.
        let size = if spec.kind == crate::spec::ApiKind::BatchAPI {
            0
        } else {
            first_step(spec, target, &serving).max(1)
        };
        let surplus = set.scale_to(size, self.engine.as_ref());
        debug_assert!(surplus.is_empty());
        Chosen {
            newest: set,
            older: serving,
            unused_token: None,
        }
    }

    /// Switches the API's route to `live`. When the server stopped while this deploy ran,
    /// what it started must not outlive it: it is retired and the deploy refused.
    async fn switch_route(&self, live: &Arc<LiveApi>) -> Result<(), StoreError> {
        match self.routes.insert(live.clone()) {
            Ok(replaced) => {
                if let Some(replaced) = replaced {
                    replaced.ended.cancel();
                }
                Ok(())
            }
            Err(_) => {
                for set in live.versions.retire_all() {
                    retire(&self.tokens, &set).await;
                }
                Err(shutting_down())
            }
        }
    }

    /// Back to a version that serves: it keeps its deployment (number, token, logs), and the
    /// token planned for the new one is revoked.
    async fn keep_deployment(&self, row: &ModelRow, live: &LiveApi, unused_token: &str) {
        let (id, reused) = (row.id.clone(), live.versions.newest().deployment());
        let result = self
            .store
            .call(move |conn| model_status::set_deployment(conn, &id, reused))
            .await
            .and(self.tokens.revoke_job_token(unused_token).await);
        if let Err(e) = result {
            let name = &live.spec.name;
            tracing::warn!("cannot go back to deployment {reused} of {name}: {e}");
        }
    }

    /// What a live version needs from then on: a BatchAPI nothing (it takes jobs at once;
    /// the older versions are retired); a RealtimeAPI its autoscaler, if it scales, and a
    /// follower of its phases and its update.
    async fn follow(&self, live: Arc<LiveApi>, target: u32) {
        if live.is_batch() {
            for older in live.versions.retire_older() {
                retire(&self.tokens, &older).await;
            }
            status::record(&self.store, &live, crate::store::DeployStatus::Complete).await;
            return;
        }
        if scaler::scales(&live) {
            let scaling = scaler::Scaling {
                engine: self.engine.clone(),
                store: self.store.clone(),
                tasks: self.tasks.clone(),
                grace: REPLICA_STOP_GRACE,
            };
            self.tasks.spawn(scaler::run(live.clone(), scaling));
        }
        let follow = Follow {
            store: self.store.clone(),
            tokens: self.tokens.clone(),
            engine: self.engine.clone(),
            tasks: self.tasks.clone(),
            target,
        };
        self.tasks.spawn(follow_newest(follow, live));
    }

    /// Makes a TrafficSplitter live: it runs nothing; the gateway passes each request to one of
    /// its APIs. What ran under its name before (a kind changed) is stopped.
    async fn apply_splitter(&self, row: &ModelRow, spec: ApiSpec) -> Result<(), StoreError> {
        let set = Arc::new(ReplicaSet::idle(&spec.name, &row.spec_hash));
        let splitter = Splitter::new(spec.apis.clone());
        let versions = ReplicaSets::new(set, Vec::new());
        let mut live = live_api(row, spec, versions, Arc::new(Metrics::default()), 0);
        live.splitter = Some(splitter);
        let live = Arc::new(live);
        let replaced = self
            .routes
            .insert(live.clone())
            .map_err(|_| shutting_down())?;
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
}

/// A live API of `row`'s version, serving from `versions` (no splitter).
fn live_api(
    row: &ModelRow,
    spec: ApiSpec,
    versions: ReplicaSets,
    metrics: Arc<Metrics>,
    target: u32,
) -> LiveApi {
    LiveApi {
        model_id: row.id.clone(),
        spec_hash: row.spec_hash.clone(),
        last_updated: row.updated_at,
        spec,
        versions,
        metrics,
        extra_path: row.deployment_name.as_ref().map(|n| format!("/{n}")),
        access: std::sync::RwLock::new(row.into()),
        queue: Default::default(),
        ended: Default::default(),
        splitter: None,
        target,
    }
}

fn shutting_down() -> StoreError {
    StoreError::Conflict("the server is shutting down; deploy again once it is back".to_string())
}

/// The size the API runs at now. In the middle of an update the newest version's size is a
/// step, not the size.
fn running_size(old: &LiveApi) -> u32 {
    if old.has_older() {
        old.target
    } else {
        old.versions.newest().desired()
    }
}

/// How many replicas a new version starts with: all of `target` for a first deploy, or as
/// many as an update's first step allows beside the versions that keep serving
/// (`follow_newest` takes it on from there).
fn first_step(spec: &ApiSpec, target: u32, serving: &[Arc<ReplicaSet>]) -> u32 {
    if serving.is_empty() {
        return target;
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let counts = rollout::Counts {
        target,
        new_started: 0,
        new_ready: 0,
        old_members: serving.iter().map(|s| s.members().len() as u32).sum(),
        old_ready: serving.iter().map(|s| ready_members(s)).sum(),
    };
    rollout::step(counts, rollout::allowance(&strategy, target)).new_members
}

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
