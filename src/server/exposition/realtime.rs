//! What the live RealtimeAPIs (and TrafficSplitters) say at scrape time: the gateway's request
//! counters and latency histogram, requests in flight and waiting, replicas by phase and the
//! replica count the autoscaler (or a roll-out) wants. Read from the route table: nothing is
//! added to the gateway's path but the per-request recording of `metrics.rs`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::engine::ReplicaPhase;
use crate::server::live_api::LiveApi;
use crate::server::metrics::{Latency, CLASSES};

/// Every phase a replica can be in, as the `phase` label writes it.
const PHASES: [(ReplicaPhase, &str); 6] = [
    (ReplicaPhase::Pending, "pending"),
    (ReplicaPhase::Initializing, "initializing"),
    (ReplicaPhase::Ready, "ready"),
    (ReplicaPhase::Restarting, "restarting"),
    (ReplicaPhase::Failed, "failed"),
    (ReplicaPhase::Stopped, "stopped"),
];

/// One API's numbers, read at once.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSample {
    pub api: String,
    pub by_class: [u64; 5],
    pub latency: Latency,
    pub in_flight: u32,
    pub queued: u32,
    /// Replicas of every version that serves, by phase (`PHASES`' order); none for a
    /// TrafficSplitter.
    pub replicas: Option<[u32; 6]>,
    pub desired: Option<u32>,
}

impl ApiSample {
    /// What `live` says now; `None` for a BatchAPI (its jobs have their own metrics).
    pub fn of(live: &LiveApi) -> Option<ApiSample> {
        if live.is_batch() {
            return None;
        }
        let realtime = live.is_realtime();
        let replicas = realtime.then(|| {
            let mut by_phase = [0u32; 6];
            let sets = std::iter::once(live.versions.newest().clone()).chain(live.versions.older());
            for member in sets.flat_map(|set| set.members()) {
                let phase = member.snapshot().phase;
                if let Some(i) = PHASES.iter().position(|(p, _)| *p == phase) {
                    by_phase[i] += 1;
                }
            }
            by_phase
        });
        Some(ApiSample {
            api: live.spec.name.clone(),
            by_class: live.metrics.by_class(),
            latency: live.metrics.latency(),
            in_flight: live.versions.in_flight(),
            queued: live.queue.waiting(),
            replicas,
            desired: realtime.then(|| live.versions.newest().desired()),
        })
    }
}

/// The samples of every live API, sorted by name, as a collector.
#[derive(Debug, Default)]
pub struct RealtimeCollector(pub Vec<ApiSample>);

impl Collector for RealtimeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let apis = &self.0;
        if apis.is_empty() {
            return Ok(());
        }
        let mut m = encoder.encode_descriptor(
            "requests",
            "Prediction requests the gateway answered, by API and status class.",
            None,
            MetricType::Counter,
        )?;
        for a in apis {
            for (class, n) in CLASSES.iter().zip(a.by_class) {
                let labels = [("api", a.api.as_str()), ("code", class)];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
        let seconds = Unit::Seconds;
        let mut m = encoder.encode_descriptor(
            "request_duration",
            "Time from a prediction request's arrival to its answer's headers, by API.",
            Some(&seconds),
            MetricType::Histogram,
        )?;
        for a in apis {
            let l = &a.latency;
            m.encode_family(&[("api", a.api.as_str())])?
                .encode_histogram::<NoLabelSet>(l.sum_seconds, l.count, &l.buckets, None)?;
        }
        gauge(
            &mut encoder,
            "requests_in_flight",
            "Prediction requests on a replica now, by API.",
            apis,
            |a| Some(a.in_flight),
        )?;
        gauge(
            &mut encoder,
            "requests_queued",
            "Prediction requests waiting for a replica now, by API.",
            apis,
            |a| Some(a.queued),
        )?;
        gauge(
            &mut encoder,
            "replicas_desired",
            "Replicas the autoscaler (or a roll-out) wants for the newest version, by RealtimeAPI.",
            apis,
            |a| a.desired,
        )?;
        let mut m = encoder.encode_descriptor(
            "replicas",
            "Replicas of every version that serves, by RealtimeAPI and phase.",
            None,
            MetricType::Gauge,
        )?;
        for a in apis {
            let Some(replicas) = a.replicas else {
                continue;
            };
            for ((_, phase), n) in PHASES.iter().zip(replicas) {
                let labels = [("api", a.api.as_str()), ("phase", phase)];
                m.encode_family(&labels)?.encode_gauge(&n)?;
            }
        }
        Ok(())
    }
}

/// A gauge with an `api` label: `value` of each API that has one.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    apis: &[ApiSample],
    value: impl Fn(&ApiSample) -> Option<u32>,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for a in apis {
        if let Some(v) = value(a) {
            m.encode_family(&[("api", a.api.as_str())])?
                .encode_gauge(&v)?;
        }
    }
    Ok(())
}
