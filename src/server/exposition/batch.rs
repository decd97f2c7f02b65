//! What the BatchAPIs' jobs say at scrape time, from the database: jobs by status, batches
//! succeeded, failed, queued and with a worker, and a histogram of the time the batches that
//! succeeded took. The tallies of jobs that ended over a minute ago are kept (their batches no
//! longer change), so a scrape reads the batches of open and just-ended jobs only,
//! one job per database call so other users of the database get in between.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::batch::status::JobStatus;
use crate::clock::now_ns;
use crate::store::job_stats::{self, Tally, DURATION_BOUNDS_MS};
use crate::store::{Store, StoreError};

/// How long after its end a job's tally is kept rather than read again (nanoseconds).
const SETTLED_NS: i64 = 60 * 1_000_000_000;

/// A batch number of a [`Tally`], with its name and help.
type Field = (&'static str, &'static str, fn(&Tally) -> u64);

/// The tallies of ended jobs, by job id.
#[derive(Debug, Default)]
pub struct EndedTallies(Mutex<HashMap<String, Tally>>);

/// One BatchAPI's jobs and batches.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchSample {
    /// Jobs by status, every status listed (`JobStatus::ALL`' order).
    pub jobs: [u64; JobStatus::ALL.len()],
    /// Batches of every job; `queued` and `leased` count open jobs only (an ended job's
    /// leftovers wait for nothing).
    pub batches: Tally,
}

impl EndedTallies {
    fn get(&self, id: &str) -> Option<Tally> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    fn keep(&self, id: &str, tally: Tally) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), tally);
    }

    /// Forgets the jobs that are gone (their API was deleted).
    fn retain(&self, ids: &[&str]) {
        let ids: std::collections::HashSet<&str> = ids.iter().copied().collect();
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| ids.contains(id.as_str()));
    }

    /// Every BatchAPI's numbers, by API name.
    pub async fn sample(&self, store: &Store) -> Result<BTreeMap<String, BatchSample>, StoreError> {
        let jobs = store.call(|c| job_stats::jobs(c)).await?;
        self.retain(&jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>());
        let mut out: BTreeMap<String, BatchSample> = BTreeMap::new();
        let now = now_ns();
        for job in jobs {
            // A stopped job's workers may still settle the batches they held for a moment.
            let settled = job
                .end_ns
                .is_some_and(|end| now.saturating_sub(end) > SETTLED_NS);
            let mut tally = match self.get(&job.id).filter(|_| settled) {
                Some(t) => t,
                None => {
                    let id = job.id.clone();
                    let t = store.call(move |c| job_stats::tally(c, &id)).await?;
                    if settled {
                        self.keep(&job.id, t);
                    }
                    t
                }
            };
            if job.end_ns.is_some() {
                (tally.queued, tally.leased) = (0, 0);
            }
            let sample = out.entry(job.api).or_default();
            let status = JobStatus::ALL.iter().position(|s| s.as_str() == job.status);
            if let Some(i) = status {
                sample.jobs[i] += 1;
            }
            sample.batches.add(&tally);
        }
        Ok(out)
    }
}

/// The BatchAPIs' samples as a collector.
#[derive(Debug, Default)]
pub struct BatchCollector(pub BTreeMap<String, BatchSample>);

impl Collector for BatchCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut m = encoder.encode_descriptor(
            "jobs",
            "Stored jobs, by BatchAPI and status.",
            None,
            MetricType::Gauge,
        )?;
        for (api, s) in &self.0 {
            for (status, n) in JobStatus::ALL.iter().zip(s.jobs) {
                let status = status.as_str().trim_start_matches("status_");
                m.encode_family(&[("api", api.as_str()), ("status", status)])?
                    .encode_gauge(&n)?;
            }
        }
        let counters: [Field; 2] = [
            (
                "batches_succeeded",
                "Batches that succeeded, by BatchAPI (stored jobs).",
                |t| t.succeeded,
            ),
            (
                "batches_failed",
                "Batches that failed for good (dead letters), by BatchAPI (stored jobs).",
                |t| t.failed,
            ),
        ];
        for (name, help, value) in counters {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (api, s) in &self.0 {
                m.encode_family(&[("api", api.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&value(&s.batches), None)?;
            }
        }
        let gauges: [Field; 2] = [
            (
                "batches_queued",
                "Batches of running jobs waiting for a worker, by BatchAPI.",
                |t| t.queued,
            ),
            (
                "batches_in_progress",
                "Batches of running jobs that a worker holds, by BatchAPI.",
                |t| t.leased,
            ),
        ];
        for (name, help, value) in gauges {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (api, s) in &self.0 {
                m.encode_family(&[("api", api.as_str())])?
                    .encode_gauge(&value(&s.batches))?;
            }
        }
        let seconds = Unit::Seconds;
        let mut m = encoder.encode_descriptor(
            "batch_duration",
            "Time a worker took on each batch that succeeded, by BatchAPI (stored jobs).",
            Some(&seconds),
            MetricType::Histogram,
        )?;
        for (api, s) in &self.0 {
            let (buckets, count) = duration_buckets(&s.batches);
            let sum = s.batches.duration_ms_sum as f64 / 1000.0;
            m.encode_family(&[("api", api.as_str())])?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }
}

/// `(upper bound in seconds, batches in that bucket only)`, and the count.
fn duration_buckets(t: &Tally) -> (Vec<(f64, u64)>, u64) {
    let buckets: Vec<(f64, u64)> = t
        .buckets
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let bound = DURATION_BOUNDS_MS
                .get(i)
                .map_or(f64::INFINITY, |ms| *ms as f64 / 1000.0);
            (bound, *n)
        })
        .collect();
    let count = buckets.iter().map(|(_, n)| n).sum();
    (buckets, count)
}
