//! A job's workers as they start: at most one per batch, each only once it holds one of the
//! server's batch-worker slots (`cortex server --max-batch-workers`). Workers still waiting
//! for a slot count as `pending` in the job's `worker_stats`.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::RunningJob;
use crate::engine::Replica;

/// The server-wide cap on batch workers that run at once, shared by every job. Slots are
/// handed out first come, first served.
#[derive(Debug, Clone)]
pub struct WorkerSlots {
    slots: Arc<Semaphore>,
    max: usize,
}

impl WorkerSlots {
    pub fn new(max: usize) -> WorkerSlots {
        let max = max.max(1);
        WorkerSlots {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// How many workers may run at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Waits for a free slot; it is given back when the permit is dropped.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        // The semaphore is never closed.
        match self.slots.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => std::future::pending().await,
        }
    }
}

/// How many workers a job runs: what it asked for, but never more than it has batches (a
/// worker without a batch would only start and stop), and at least one.
pub fn planned_workers(asked: u32, total_batches: u64) -> u32 {
    let batches = u32::try_from(total_batches).unwrap_or(u32::MAX);
    asked.min(batches).max(1)
}

/// The workers of one run of a job and the slots they hold (given back when the crew is
/// dropped, after its workers were stopped).
pub(super) struct Crew {
    handle: Arc<RunningJob>,
    planned: u32,
    workers: Vec<Arc<dyn Replica>>,
    permits: Vec<OwnedSemaphorePermit>,
    /// The feeders of the workers started so far.
    pub feeders: JoinSet<()>,
}

impl Crew {
    pub fn new(handle: Arc<RunningJob>, planned: u32) -> Crew {
        handle.set_waiting(planned);
        Crew {
            handle,
            planned,
            workers: Vec::new(),
            permits: Vec::new(),
            feeders: JoinSet::new(),
        }
    }

    /// Workers still waiting for a slot.
    pub fn waiting(&self) -> u32 {
        self.planned.saturating_sub(self.workers.len() as u32)
    }

    /// The index the next worker gets.
    pub fn next_index(&self) -> u32 {
        self.workers.len() as u32
    }

    pub fn workers(&self) -> &[Arc<dyn Replica>] {
        &self.workers
    }

    /// Counts a started worker, which holds `permit` until the crew is dropped.
    pub fn add(&mut self, worker: Arc<dyn Replica>, permit: OwnedSemaphorePermit) {
        self.workers.push(worker);
        self.permits.push(permit);
        self.handle.set_workers(self.workers.clone());
        self.handle.set_waiting(self.waiting());
    }

    /// No worker waits any more (the job ended).
    pub fn stop_waiting(&mut self) {
        self.planned = self.workers.len() as u32;
        self.handle.set_waiting(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_no_more_workers_than_batches() {
        assert_eq!(planned_workers(64, 2), 2);
        assert_eq!(planned_workers(3, 7), 3);
        assert_eq!(planned_workers(5, 0), 1);
        assert_eq!(planned_workers(u32::MAX, u64::MAX), u32::MAX);
    }

    #[tokio::test]
    async fn slots_are_given_back_when_dropped() {
        let slots = WorkerSlots::new(1);
        let first = slots.acquire().await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), slots.acquire());
        assert!(waiting.await.is_err(), "the only slot is taken");
        drop(first);
        let _second = slots.acquire().await;
        assert_eq!(WorkerSlots::new(0).max(), 1);
    }
}
