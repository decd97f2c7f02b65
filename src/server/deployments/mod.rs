//! Deployments: makes a stored API version run and serve, and stops it.
//!
//! `apply` (`apply.rs`) plans the new version (`runtime::plan`), gives it a job token
//! (`tokens`), starts its replica set through the engine and switches the route table to it
//! while older versions keep serving; `follow.rs` watches its phases (`status`) until it is
//! ready and rolls an update out; then the older versions are retired. Here: the live APIs,
//! their removal, the reconcile loop and shutdown. Nothing here is on the prediction hot
//! path: the gateway reads the route table.

mod apply;
pub use apply::Deployment;
mod follow;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::live_api::LiveApi;
use super::replica_set::ReplicaSet;
use super::route_table::RouteTable;
use super::status::{self, RestoreErrors};
use super::tokens::Tokens;
use crate::engine::{Engine, ReplicaLogs};
use crate::store::model_status;
use crate::store::{models, Store, StoreError};

/// How long a replica gets to finish in-flight work after it is asked to stop.
const REPLICA_STOP_GRACE: Duration = Duration::from_secs(5);

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
                        model_status::compare_and_set_status(c, &id, deployment, from, repaired)
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
