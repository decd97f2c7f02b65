//! A version after its deploy: its phases recorded as they change, an update rolled out step
//! by step (`rollout`), and the older versions retired once they have no member left.

use std::sync::Arc;
use std::time::Duration;

use super::{retire, REPLICA_STOP_GRACE};
use crate::engine::{Engine, ReplicaPhase};
use crate::server::live_api::LiveApi;
use crate::server::replica_set::{drain_in_background, ReplicaSet};
use crate::server::rollout;
use crate::server::status;
use crate::server::tokens::Tokens;
use crate::store::{replicas, Store};

/// Follows the newest version of an API until it stops or the API is replaced: its status
/// is recorded when it changes, an update is rolled out step by step (`rollout`), and the
/// older versions are retired once they have no member left.
pub(super) async fn follow_newest(ctx: Follow, live: Arc<LiveApi>) {
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
pub(super) struct Follow {
    pub(super) store: Store,
    pub(super) tokens: Arc<Tokens>,
    pub(super) engine: Arc<dyn Engine>,
    pub(super) tasks: tokio_util::task::TaskTracker,
    /// The replicas the update ends with.
    pub(super) target: u32,
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

/// How many of a set's members are ready.
pub(super) fn ready_members(set: &ReplicaSet) -> u32 {
    set.members()
        .iter()
        .filter(|m| m.ready_addr().is_some())
        .count() as u32
}

/// Records which replicas run the API's newest version, so their logs stay reachable when
/// nothing runs.
pub(super) async fn record_replicas(store: &Store, live: &LiveApi) {
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
