//! What the server cleans on disk: bundles and unpacked projects no API references any more
//! (after a delete, and at start), and what an interrupted server left half written.

use crate::store::bundle_sweep::{self, GRACE_SECS};
use crate::store::{BundleStore, ModelRow, Store};

/// The bundles a model uses: its bundle, the one that served last and its saved files.
pub fn layers_of(row: &ModelRow) -> Vec<String> {
    let mut layers = vec![row.bundle_sha256.clone()];
    layers.extend(row.serving.as_ref().map(|s| s.bundle_sha256.clone()));
    if let Some(o) = &row.overlay_sha256 {
        layers.extend(o.split(',').map(str::to_string));
    }
    layers
}

/// Removes the bundles no model references and the projects unpacked from them: `candidates`
/// at once (a deleted API's), or without them every bundle older than the grace period. A
/// failure is logged: nothing depends on it.
pub async fn sweep(store: &Store, bundles: &BundleStore, candidates: Option<Vec<String>>) {
    let forgotten = store
        .call(move |c| bundle_sweep::forget_unreferenced(c, candidates.as_deref(), GRACE_SECS))
        .await;
    let forgotten = match forgotten {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("cannot sweep unused bundles: {e}");
            return;
        }
    };
    let bundles = bundles.clone();
    let removed =
        tokio::task::spawn_blocking(move || bundle_sweep::remove_files(&bundles, &forgotten)).await;
    if let Ok((b, p)) = removed {
        if b + p > 0 {
            tracing::info!("removed {b} unused bundle(s) and {p} unpacked project(s)");
        }
    }
}

/// At start, before anything unpacks: partial unpacks and upload leftovers, then unused
/// bundles past the grace period.
pub async fn at_start(store: &Store, bundles: &BundleStore) {
    let b = bundles.clone();
    if let Ok(n) = tokio::task::spawn_blocking(move || b.clean_partial()).await {
        if n > 0 {
            eprintln!("removed {n} partial unpack(s) or upload(s) a previous server left");
        }
    }
    sweep(store, bundles, None).await;
}
