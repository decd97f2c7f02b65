//! The autoscaler at work: for each live RealtimeAPI, samples the requests in flight (on its
//! replicas and waiting in its queue), asks the pure decision (`crate::autoscale`) how many
//! replicas the newest version should have, and makes it that strong. Replicas taken out are
//! drained (their requests finish) before they stop. A request that waits while the API has
//! no replica wakes it at once: a cold start does not wait for the next sample.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::live_api::LiveApi;
use super::replica_set::drain_in_background;
use crate::autoscale::{Autoscaler, Policy, Sample};
use crate::engine::Engine;
use crate::store::{replicas, Store};

/// How often the load is sampled and the decision made (`CORTEX_AUTOSCALE_TICK_MS` changes
/// it). cortex decided every 10 s over a window of samples; sampling more often makes the
/// window's mean follow short requests better.
fn tick() -> Duration {
    std::env::var("CORTEX_AUTOSCALE_TICK_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_millis(250), Duration::from_millis)
}

/// What the loop needs besides the API.
pub struct Scaling {
    pub engine: Arc<dyn Engine>,
    pub store: Store,
    pub tasks: tokio_util::task::TaskTracker,
    /// How long a replica taken out gets to finish its requests, and then to stop.
    pub grace: Duration,
}

/// Whether `live` can change its replica count at all.
pub fn scales(live: &LiveApi) -> bool {
    live.spec
        .autoscaling
        .as_ref()
        .is_some_and(|a| a.min_replicas != a.max_replicas || a.min_replicas == 0)
}

/// Scales `live`'s newest version until `live` is replaced or removed.
pub async fn run(live: Arc<LiveApi>, scaling: Scaling) {
    let Some(autoscaling) = live.spec.autoscaling.as_ref() else {
        return;
    };
    let mut scaler = Autoscaler::new(Policy::from(autoscaling));
    let started = Instant::now();
    let tick = tick();
    loop {
        tokio::select! {
            _ = live.ended.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
            _ = live.queue.demand() => {}
        }
        let set = live.versions.newest().clone();
        let in_flight = live.versions.in_flight() + live.queue.waiting();
        let at = started.elapsed().as_secs_f64();
        scaler.observe(Sample {
            at,
            in_flight: f64::from(in_flight),
        });
        // An update still rolling out is not scaled: the roll-out owns the counts.
        if live.has_older() {
            continue;
        }
        let current = set.desired();
        let wanted = scaler.decide(at, current);
        if wanted == current {
            continue;
        }
        let name = &live.spec.name;
        tracing::info!(
            "{name}: scaling from {current} to {wanted} replicas ({in_flight} requests in flight)"
        );
        if current == 0 {
            set.mark_cold_start();
        }
        // Their requests may take as long as the API lets them.
        let surplus = set.scale_to(wanted, scaling.engine.as_ref());
        let drain = live.spec.networking.timeout.to_std();
        drain_in_background(&scaling.tasks, surplus, drain, scaling.grace);
        // Their logs stay reachable once they are gone.
        let ids: Vec<String> = set.members().iter().map(|m| m.id().to_string()).collect();
        if !ids.is_empty() {
            let (model, hash) = (live.model_id.clone(), live.spec_hash.clone());
            let recorded = scaling
                .store
                .call(move |c| replicas::record(c, &model, &hash, &ids))
                .await;
            if let Err(e) = recorded {
                tracing::warn!("cannot record the replicas of {name}: {e}");
            }
        }
    }
}
