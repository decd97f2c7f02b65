//! `GET /metrics`: the server's numbers in the Prometheus text format (0.0.4), encoded by
//! `prometheus-client`. Everything is collected at scrape time: the live APIs from the route
//! table (`realtime`), jobs and batches from the database (`batch`), the process from
//! `/proc/self` (`process`); the gateway only records each request in its API's `Metrics`.
//! Names: `cortex_` and Prometheus conventions (`_total` counters, `_seconds`, `_bytes`);
//! the process's are the usual `process_*`.

mod batch;
mod process;
mod realtime;

use std::time::Instant;

#[cfg(test)]
use prometheus_client::collector::Collector;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

use super::deployments::Deployments;
use crate::store::{Store, StoreError};
use batch::{BatchCollector, EndedTallies};
use process::{ProcessCollector, ProcessSample};
use realtime::{ApiSample, RealtimeCollector};

/// What scrapes keep between them: when the server started, and the tallies of ended jobs.
#[derive(Debug)]
pub struct Exporter {
    started: Instant,
    ended: EndedTallies,
}

impl Default for Exporter {
    fn default() -> Self {
        Exporter {
            started: Instant::now(),
            ended: EndedTallies::default(),
        }
    }
}

impl Exporter {
    /// The text a scrape answers, from the live APIs and the store's jobs.
    pub async fn scrape(
        &self,
        deployments: &Deployments,
        store: &Store,
    ) -> Result<String, StoreError> {
        let mut apis: Vec<ApiSample> = deployments
            .all()
            .iter()
            .filter_map(|live| ApiSample::of(live))
            .collect();
        apis.sort_by(|a, b| a.api.cmp(&b.api));
        let batches = self.ended.sample(store).await?;
        let process = tokio::task::spawn_blocking(ProcessSample::read)
            .await
            .ok()
            .flatten();

        let mut registry = Registry::default();
        let cortex = registry.sub_registry_with_prefix("cortex");
        cortex.register(
            "build",
            "The cortex server's version",
            Info::new([("version", crate::VERSION)]),
        );
        cortex.register_with_unit(
            "uptime",
            "Seconds since the server started",
            Unit::Seconds,
            ConstGauge::new(self.started.elapsed().as_secs_f64()),
        );
        if let Some((ready, starting)) = deployments.spare_interpreters() {
            let spares = Family::<[(&'static str, &'static str); 1], Gauge>::default();
            spares
                .get_or_create(&[("state", "ready")])
                .set(ready as i64);
            spares
                .get_or_create(&[("state", "starting")])
                .set(starting as i64);
            cortex.register(
                "spare_interpreters",
                "Spare python interpreters python replicas start from, by state",
                spares,
            );
        }
        cortex.register_collector(Box::new(RealtimeCollector(apis)));
        cortex.register_collector(Box::new(BatchCollector(batches)));
        registry.register_collector(Box::new(ProcessCollector(process)));
        Ok(encode(&registry))
    }
}

/// The registry in the Prometheus text format.
fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String fails only if a collector does: ours do not.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        tracing::error!("cannot encode the metrics: {e}");
    }
    out
}

/// Lets a collector be tested alone: its text, under `cortex_`.
#[cfg(test)]
fn text_of(collector: impl Collector) -> String {
    let mut registry = Registry::with_prefix("cortex");
    registry.register_collector(Box::new(collector));
    encode(&registry)
}

#[cfg(test)]
mod tests;
