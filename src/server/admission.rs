//! Admission control for predictions: a request gets a [`Slot`] on a ready replica with fewer
//! than `max_replica_concurrency` requests in flight; when every replica is that busy it waits
//! in a bounded queue (`max_queue_length` per replica), and beyond it is refused at once
//! (503 `overloaded`: no waiting for a queue that is full). While an API is scaled to zero, or
//! starting from zero, requests wait for its first replica. Every wait ends at the request's
//! deadline (`networking.timeout`, then 504).
//!
//! No lock is held across an await; a wait is woken when a slot is given back (`freed`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::live_api::LiveApi;
use super::replica_set::{Pick, Slot};
use super::waiting::Waiting;

/// How often a waiting request looks again without being told (replicas becoming ready do
/// not tell).
const RECHECK: Duration = Duration::from_millis(25);

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No replica is ready, and none is starting for it.
    NotReady,
    /// Every replica is at `max_replica_concurrency` and the queue is full.
    Overloaded,
    /// The deadline passed while it waited.
    TimedOut,
    /// What it waited for was deleted, and nothing serves its route now.
    Gone,
}

/// A slot on one of `api`'s replicas if one has room now (most requests find one), a refusal
/// if none is ready and none is coming; `None` when the request has to [`wait`].
pub fn now(api: &LiveApi) -> Option<Result<Slot, Refusal>> {
    look(api, limits(api).0)
}

/// `autoscaling.max_replica_concurrency` and `autoscaling.max_queue_length`.
fn limits(api: &LiveApi) -> (u32, u32) {
    api.spec
        .autoscaling
        .as_ref()
        .map_or((u32::MAX, crate::spec::DEFAULT_MAX_QUEUE_LENGTH), |a| {
            (a.max_replica_concurrency, a.max_queue_length)
        })
}

/// A slot on a replica of the API, once one has room (until `deadline`), for a request
/// [`now`] told to wait on `api`: its replicas are busy or starting from zero. It waits in the
/// API's queue (at most `max_queue_length` per replica). An update, a refresh or a delete
/// may replace `api` meanwhile: the request then waits for what `serving` says serves its
/// route now, in that one's queue (whose autoscaler counts it), or is refused as
/// [`Refusal::Gone`] once nothing does. Returns the slot with the API it is on.
pub async fn wait(
    api: Arc<LiveApi>,
    deadline: Instant,
    serving: impl Fn() -> Option<Arc<LiveApi>>,
) -> Result<(Arc<LiveApi>, Slot), Refusal> {
    let mut waiting = Waiting::enter(&api, queue_cap(&api)).ok_or(Refusal::Overloaded)?;
    // Whether it moved to a version a deploy brought: it then waits for that one to start.
    let mut moved = false;
    loop {
        let api = waiting.api().clone();
        if !api.ended.is_cancelled() {
            let max_in_flight = limits(&api).0;
            // Listening before looking again, so a slot given back in between is not missed.
            let listening = api.versions.freed().listen();
            let notified = listening.next();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match look(&api, max_in_flight) {
                Some(Err(Refusal::NotReady)) if moved && api.versions.newest().is_coming() => {}
                Some(found) => return found.map(|slot| (api.clone(), slot)),
                None => {}
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(RECHECK) => {}
                _ = api.ended.cancelled() => {}
                _ = tokio::time::sleep_until(deadline) => return Err(Refusal::TimedOut),
            }
            if !api.ended.is_cancelled() {
                continue;
            }
        }
        match serving() {
            None => return Err(Refusal::Gone),
            Some(now) if Arc::ptr_eq(&now, &api) => {
                // Ended, but still what the route table holds for an instant: look again.
                tokio::select! {
                    _ = tokio::time::sleep(RECHECK) => {}
                    _ = tokio::time::sleep_until(deadline) => return Err(Refusal::TimedOut),
                }
            }
            Some(now) => {
                waiting = Waiting::enter(&now, queue_cap(&now)).ok_or(Refusal::Overloaded)?;
                moved = true;
            }
        }
    }
}

/// How many requests may wait for `api`: `max_queue_length` per replica of its newest version
/// (starting from zero, at least the one that wakes a replica).
fn queue_cap(api: &LiveApi) -> u32 {
    let replicas = api.versions.newest().desired().max(1);
    limits(api).1.saturating_mul(replicas).max(1)
}

/// A slot if a replica has room, a refusal if none is ready and none is coming; `None` when
/// the request may wait.
fn look(api: &LiveApi, max_in_flight: u32) -> Option<Result<Slot, Refusal>> {
    match api.versions.pick(max_in_flight) {
        Pick::Slot(slot) => Some(Ok(slot)),
        Pick::Full => None,
        Pick::NoneReady if api.versions.newest().holds_requests() => None,
        Pick::NoneReady => Some(Err(Refusal::NotReady)),
    }
}
