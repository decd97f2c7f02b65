//! Request counters and latency per API, in memory (lock-free): what `cortex get` shows, and
//! what `GET /metrics` exposes (`prometheus`). Recording is a few relaxed atomic additions to
//! the calling thread's shard: it runs on the gateway's hot path.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::api::ApiMetrics;

/// The upper bounds of the latency histogram's buckets, in microseconds (5 ms to 60 s; a
/// last bucket takes the rest).
pub const LATENCY_BOUNDS_US: [u64; 13] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000, 60_000_000,
];

/// The status classes counted apart: `1xx` to `5xx`.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// An API's counters, in shards: each thread adds to its own (threads are given shards in
/// turn), so the gateway's threads do not pass the counters' cache lines back and forth on
/// every request. Reading sums the shards.
#[derive(Debug, Default)]
pub struct Metrics {
    shards: [Shard; SHARDS],
}

/// How many shards an API's counters have: more than the cores this server is made for.
const SHARDS: usize = 8;

/// One shard, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    /// Requests by status class (`CLASSES`); other statuses count in `requests` only.
    by_class: [AtomicU64; 5],
    requests: AtomicU64,
    latency_us_total: AtomicU64,
    /// Requests per latency bucket (not cumulative); the last is beyond every bound.
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
}

/// The shard of the calling thread.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// The latency histogram as read: buckets not cumulative, as `prometheus-client` takes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub sum_seconds: f64,
    pub count: u64,
    /// `(upper bound in seconds, requests in that bucket only)`, the last bound `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl Metrics {
    pub fn record(&self, status: u16, latency: Duration) {
        let shard = &self.shards[shard_index()];
        if let Some(class) = (status / 100).checked_sub(1).map(usize::from) {
            if let Some(counter) = shard.by_class.get(class) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        shard.requests.fetch_add(1, Ordering::Relaxed);
        shard.latency_us_total.fetch_add(us, Ordering::Relaxed);
    }

    /// `field` of every shard, summed.
    fn sum(&self, field: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Requests answered in each status class of `CLASSES`.
    pub fn by_class(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.sum(|s| &s.by_class[i]))
    }

    /// The latency histogram; its count is the sum of its buckets, so it stays consistent
    /// while requests are recorded.
    pub fn latency(&self) -> Latency {
        let buckets: Vec<(f64, u64)> = (0..=LATENCY_BOUNDS_US.len())
            .map(|i| {
                let bound = LATENCY_BOUNDS_US
                    .get(i)
                    .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
                (bound, self.sum(|s| &s.buckets[i]))
            })
            .collect();
        Latency {
            sum_seconds: self.sum(|s| &s.latency_us_total) as f64 / 1e6,
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
        }
    }

    pub fn snapshot(&self) -> ApiMetrics {
        let requests = self.sum(|s| &s.requests);
        let total = self.sum(|s| &s.latency_us_total);
        let [_, code_2xx, _, code_4xx, code_5xx] = self.by_class();
        ApiMetrics {
            code_2xx,
            code_4xx,
            code_5xx,
            latency_ms_avg: (requests > 0).then(|| total as f64 / requests as f64 / 1000.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_class_and_averages_latency() {
        let m = Metrics::default();
        assert_eq!(m.snapshot().latency_ms_avg, None);
        m.record(200, Duration::from_millis(2));
        m.record(404, Duration::from_millis(4));
        m.record(503, Duration::from_millis(6));
        let s = m.snapshot();
        assert_eq!((s.code_2xx, s.code_4xx, s.code_5xx), (1, 1, 1));
        assert_eq!(s.latency_ms_avg, Some(4.0));
    }

    #[test]
    fn what_many_threads_record_is_all_counted() {
        let m = Metrics::default();
        std::thread::scope(|scope| {
            for _ in 0..12 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        m.record(200, Duration::from_millis(1));
                    }
                });
            }
        });
        assert_eq!(m.snapshot().code_2xx, 1200);
        assert_eq!(m.latency().count, 1200);
        assert!((m.latency().sum_seconds - 1.2).abs() < 1e-9);
    }

    #[test]
    fn latency_lands_in_the_first_bucket_whose_bound_it_does_not_pass() {
        let m = Metrics::default();
        m.record(200, Duration::from_millis(5));
        m.record(200, Duration::from_millis(7));
        m.record(301, Duration::from_secs(61));
        m.record(101, Duration::ZERO);
        let l = m.latency();
        assert_eq!(l.count, 4);
        assert_eq!(l.buckets.len(), LATENCY_BOUNDS_US.len() + 1);
        assert_eq!(l.buckets[0], (0.005, 2), "0 and 5 ms are within 5 ms");
        assert_eq!(l.buckets[1], (0.01, 1));
        assert_eq!(*l.buckets.last().unwrap(), (f64::INFINITY, 1));
        assert!((l.sum_seconds - 61.012).abs() < 1e-9, "{}", l.sum_seconds);
        assert_eq!(m.by_class(), [1, 2, 1, 0, 0]);
    }
}
