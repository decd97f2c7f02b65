//! What the server cleans on disk: bundles and unpacked projects no API references any more,
//! virtualenvs nothing uses (`venv_sweep.rs`), and what an interrupted server left half
//! written (at start). A bundle an API stopped using
//! (delete, redeploy) is removed at the next sweep once nothing runs from it (a version still
//! serving during an update, a job's workers); one uploaded but never deployed gets an hour.
//! Sweeps run after a delete and every 10 minutes (`CORTEX_SWEEP_SECS`), holding the lock of
//! API changes, so a deploy never loses the bundle it is unpacking.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::deployments::Deployments;
use super::jobs::Jobs;
use super::venv_sweep;
use crate::runtime::plan::model_venvs;
use crate::store::bundle_sweep::{self, GRACE_SECS};
use crate::store::{models, BundleStore, ModelRow, Store, StoreError};

/// The bundles a model uses: its bundle, the one that served last and its saved files.
pub fn layers_of(row: &ModelRow) -> Vec<String> {
    let mut layers = vec![row.bundle_sha256.clone()];
    layers.extend(row.serving.as_ref().map(|s| s.bundle_sha256.clone()));
    if let Some(o) = &row.overlay_sha256 {
        layers.extend(o.split(',').map(str::to_string));
    }
    layers
}

/// Sweeps unused bundles and projects.
pub struct Sweeper {
    store: Store,
    bundles: BundleStore,
    deployments: Arc<Deployments>,
    jobs: Arc<Jobs>,
    changes: Arc<tokio::sync::Mutex<()>>,
    /// Bundles an API stopped using: no grace period for them.
    released: Mutex<HashSet<String>>,
    /// Where the models' virtualenvs are (`venv_sweep.rs`).
    venvs: PathBuf,
}

impl Sweeper {
    pub fn new(
        store: Store,
        bundles: BundleStore,
        deployments: Arc<Deployments>,
        jobs: Arc<Jobs>,
        changes: Arc<tokio::sync::Mutex<()>>,
        venvs: PathBuf,
    ) -> Sweeper {
        Sweeper {
            store,
            bundles,
            deployments,
            jobs,
            changes,
            released: Mutex::default(),
            venvs,
        }
    }

    /// `row`'s bundles may no longer be used (it is deleted or redeployed).
    pub fn release(&self, row: &ModelRow) {
        self.released
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(layers_of(row));
    }

    /// Bundles something runs from: every serving version of every API, and running jobs.
    fn in_use(&self, rows: &[ModelRow]) -> HashSet<String> {
        let mut dirs = self.jobs.projects_in_use();
        for live in rows.iter().filter_map(|r| self.deployments.get(&r.name)) {
            let sets = std::iter::once(live.versions.newest().clone()).chain(live.versions.older());
            dirs.extend(sets.filter_map(|s| s.template().map(|t| t.cwd.clone())));
        }
        dirs.iter()
            .filter_map(|d| d.file_name()?.to_str().map(str::to_string))
            .flat_map(|name| name.split('+').map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    /// One sweep; the caller holds the lock of API changes. A failure is logged: nothing
    /// depends on it.
    pub async fn sweep_locked(&self) {
        // One list of the models for the whole sweep.
        let rows = self.store.call(|c| models::list(c)).await;
        let in_use = self.in_use(rows.as_deref().unwrap_or_default());
        let released = self
            .released
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let keep = in_use.clone();
        let forgotten = self
            .store
            .call(move |c| bundle_sweep::forget_unreferenced(c, &released, &keep, GRACE_SECS))
            .await;
        let forgotten = match forgotten {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("cannot sweep unused bundles: {e}");
                return;
            }
        };
        // Still released: those that are in use now (swept once they are not).
        self.released
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|sha| in_use.contains(sha) && !forgotten.removed.contains(sha));
        let bundles = self.bundles.clone();
        let removed =
            tokio::task::spawn_blocking(move || bundle_sweep::remove_files(&bundles, &forgotten))
                .await;
        if let Ok((b, p)) = removed {
            if b + p > 0 {
                tracing::info!("removed {b} unused bundle(s) and {p} unpacked project(s)");
            }
        }
        self.sweep_venvs(rows).await;
    }

    /// The virtualenvs of models that are gone, and those of live models no replica started
    /// from for a while (`CORTEX_VENV_UNUSED_SECS`, an hour). Never without the list of the
    /// models that exist.
    async fn sweep_venvs(&self, rows: Result<Vec<ModelRow>, StoreError>) {
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("cannot sweep unused virtualenvs: {e}");
                return;
            }
        };
        let live: HashSet<String> = rows
            .iter()
            .filter_map(|r| {
                let dir = model_venvs(&self.venvs, &r.id);
                dir.file_name()?.to_str().map(str::to_string)
            })
            .collect();
        let venvs = self.venvs.clone();
        let unused_for = std::env::var("CORTEX_VENV_UNUSED_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(venv_sweep::UNUSED_FOR, Duration::from_secs);
        let removed =
            tokio::task::spawn_blocking(move || venv_sweep::sweep(&venvs, &live, unused_for)).await;
        if let Ok(r) = removed {
            if r.models + r.venvs > 0 {
                tracing::info!(
                    "removed the virtualenvs of {} deleted api(s) and {} virtualenv(s) unused for {}s",
                    r.models,
                    r.venvs,
                    unused_for.as_secs()
                );
            }
        }
    }

    /// Sweeps every `CORTEX_SWEEP_SECS` (10 minutes) until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let every = std::env::var("CORTEX_SWEEP_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(600), Duration::from_secs);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let _changing = self.changes.lock().await;
            self.sweep_locked().await;
        }
    }
}

/// At start, before anything unpacks or runs: partial unpacks and upload leftovers, the
/// projects of copies without their base's secrets (unpacked again under this server's
/// rules), then unused bundles past the grace period.
pub async fn at_start(store: &Store, bundles: &BundleStore) {
    let b = bundles.clone();
    if let Ok(n) = tokio::task::spawn_blocking(move || b.clean_partial()).await {
        if n > 0 {
            eprintln!("removed {n} partial unpack(s) or upload(s) a previous server left");
        }
    }
    let b = bundles.clone();
    let _ = tokio::task::spawn_blocking(move || b.forget_copies_unpacked()).await;
    let (none, keep) = (HashSet::new(), HashSet::new());
    let forgotten = store
        .call(move |c| bundle_sweep::forget_unreferenced(c, &none, &keep, GRACE_SECS))
        .await;
    match forgotten {
        Ok(f) => {
            let b = bundles.clone();
            let _ = tokio::task::spawn_blocking(move || bundle_sweep::remove_files(&b, &f)).await;
        }
        Err(e) => tracing::warn!("cannot sweep unused bundles: {e}"),
    }
}
