//! Request counters and latency per API, in memory (lock-free).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::api::ApiMetrics;

#[derive(Debug, Default)]
pub struct Metrics {
    code_2xx: AtomicU64,
    code_4xx: AtomicU64,
    code_5xx: AtomicU64,
    requests: AtomicU64,
    latency_us_total: AtomicU64,
}

impl Metrics {
    pub fn record(&self, status: u16, latency: Duration) {
        let counter = match status {
            200..=299 => &self.code_2xx,
            400..=499 => &self.code_4xx,
            500..=599 => &self.code_5xx,
            _ => {
                self.requests.fetch_add(1, Ordering::Relaxed);
                self.latency_us_total
                    .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
                return;
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.latency_us_total
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ApiMetrics {
        let requests = self.requests.load(Ordering::Relaxed);
        let total = self.latency_us_total.load(Ordering::Relaxed);
        ApiMetrics {
            code_2xx: self.code_2xx.load(Ordering::Relaxed),
            code_4xx: self.code_4xx.load(Ordering::Relaxed),
            code_5xx: self.code_5xx.load(Ordering::Relaxed),
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
}
