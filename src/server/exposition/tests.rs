use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use super::batch::{BatchCollector, BatchSample};
use super::process::{ProcessCollector, ProcessSample};
use super::realtime::{ApiSample, RealtimeCollector};
use super::text_of;
use crate::server::metrics::Metrics;

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("the text parses")
}

/// The value of the sample named `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a single value: {other:?}"),
        })
}

#[test]
fn an_api_sample_is_written_as_counters_gauges_and_a_cumulative_histogram() {
    let m = Metrics::default();
    m.record(200, Duration::from_millis(3));
    m.record(200, Duration::from_millis(30));
    m.record(413, Duration::from_millis(1));
    let sample = ApiSample {
        api: "iris".into(),
        by_class: m.by_class(),
        latency: m.latency(),
        in_flight: 2,
        queued: 1,
        replicas: Some([0, 1, 2, 0, 0, 0]),
        desired: Some(3),
    };
    let text = text_of(RealtimeCollector(vec![sample]));
    assert!(
        text.contains("# TYPE cortex_requests_total counter"),
        "{text}"
    );
    let s = parse(&text);
    let iris = ("api", "iris");
    assert_eq!(
        value(&s, "cortex_requests_total", &[iris, ("code", "2xx")]),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "cortex_requests_total", &[iris, ("code", "4xx")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "cortex_requests_total", &[iris, ("code", "5xx")]),
        Some(0.0)
    );
    assert_eq!(value(&s, "cortex_requests_in_flight", &[iris]), Some(2.0));
    assert_eq!(value(&s, "cortex_requests_queued", &[iris]), Some(1.0));
    assert_eq!(value(&s, "cortex_replicas_desired", &[iris]), Some(3.0));
    assert_eq!(
        value(&s, "cortex_replicas", &[iris, ("phase", "ready")]),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "cortex_replicas", &[iris, ("phase", "initializing")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "cortex_request_duration_seconds_count", &[iris]),
        Some(3.0)
    );
    let hist = s
        .samples
        .iter()
        .find(|x| x.metric == "cortex_request_duration_seconds")
        .expect("the histogram");
    let Value::Histogram(buckets) = &hist.value else {
        panic!("{hist:?}")
    };
    let le = |bound: f64| {
        buckets
            .iter()
            .find(|b| b.less_than == bound)
            .map(|b| b.count)
    };
    assert_eq!(le(0.005), Some(2.0), "1 and 3 ms");
    assert_eq!(le(0.05), Some(3.0), "cumulative: 30 ms too");
    assert_eq!(le(f64::INFINITY), Some(3.0));
}

#[test]
fn a_splitter_has_requests_but_no_replicas() {
    let sample = ApiSample {
        api: "split".into(),
        by_class: [0; 5],
        latency: Metrics::default().latency(),
        in_flight: 0,
        queued: 0,
        replicas: None,
        desired: None,
    };
    let s = parse(&text_of(RealtimeCollector(vec![sample])));
    assert_eq!(
        value(&s, "cortex_requests_total", &[("api", "split")]),
        Some(0.0)
    );
    assert_eq!(value(&s, "cortex_replicas", &[("api", "split")]), None);
    assert_eq!(
        value(&s, "cortex_replicas_desired", &[("api", "split")]),
        None
    );
}

#[test]
fn a_batch_sample_lists_every_job_status_and_the_batches() {
    let mut sample = BatchSample::default();
    sample.jobs[2] = 1; // succeeded
    sample.batches.succeeded = 3;
    sample.batches.failed = 1;
    sample.batches.queued = 4;
    sample.batches.buckets[1] = 3;
    sample.batches.duration_ms_sum = 120;
    let text = text_of(BatchCollector(BTreeMap::from([(
        "sum".to_string(),
        sample,
    )])));
    let s = parse(&text);
    let sum = ("api", "sum");
    assert_eq!(
        value(&s, "cortex_jobs", &[sum, ("status", "succeeded")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "cortex_jobs", &[sum, ("status", "running")]),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "cortex_batches_succeeded_total", &[sum]),
        Some(3.0)
    );
    assert_eq!(value(&s, "cortex_batches_failed_total", &[sum]), Some(1.0));
    assert_eq!(value(&s, "cortex_batches_queued", &[sum]), Some(4.0));
    assert_eq!(value(&s, "cortex_batches_in_progress", &[sum]), Some(0.0));
    assert_eq!(
        value(&s, "cortex_batch_duration_seconds_count", &[sum]),
        Some(3.0)
    );
    assert_eq!(
        value(&s, "cortex_batch_duration_seconds_sum", &[sum]),
        Some(0.12)
    );
}

#[test]
fn the_process_collector_writes_the_usual_names() {
    let p = ProcessSample {
        cpu_seconds: 1.5,
        resident_bytes: 4096,
        virtual_bytes: 8192,
        start_time: 1.7e9,
        open_fds: Some(12),
        max_fds: None,
    };
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(ProcessCollector(Some(p))));
    let s = parse(&super::encode(&registry));
    assert_eq!(value(&s, "process_cpu_seconds_total", &[]), Some(1.5));
    assert_eq!(
        value(&s, "process_resident_memory_bytes", &[]),
        Some(4096.0)
    );
    assert_eq!(value(&s, "process_virtual_memory_bytes", &[]), Some(8192.0));
    assert_eq!(value(&s, "process_start_time_seconds", &[]), Some(1.7e9));
    assert_eq!(value(&s, "process_open_fds", &[]), Some(12.0));
    assert_eq!(
        value(&s, "process_max_fds", &[]),
        None,
        "not read: left out"
    );
}

#[tokio::test]
async fn a_job_that_ended_a_while_ago_is_tallied_once_and_forgotten_with_its_api() {
    use crate::store::jobs::{self, Ending, NewJob};
    let store = crate::store::Store::open_in_memory().unwrap();
    store
        .call(|c| {
            c.execute_batch(
                "INSERT INTO users (id, username, admin, created_at) VALUES ('u', 'u', 1, 0);
                 INSERT INTO bundles (sha256, size, created_at) VALUES ('b', 1, 0);
                 INSERT INTO models (id, name, kind, owner_id, spec_json, spec_hash,
                                     bundle_sha256, config_file, created_at, updated_at)
                 VALUES ('m', 'sum', 'BatchAPI', 'u', '{}', 'h', 'b', 'c', 0, 0);",
            )?;
            let batches = vec!["[1]".to_string(), "[2]".to_string()];
            let job = |id| NewJob {
                id,
                model_id: "m",
                api_name: "sum",
                workers: 1,
                config_json: "{}",
                timeout_secs: None,
                max_receive_count: 1,
                created_ns: 100,
            };
            jobs::create(c, &job("old"), &batches)?;
            jobs::create(c, &job("open"), &batches)?;
            c.execute(
                "UPDATE batches SET state = 'succeeded', duration_ms = 20 WHERE job_id = 'old'",
                [],
            )?;
            let ending = Ending {
                status: "status_succeeded",
                end_ns: 1_000,
                failure: None,
                workers_succeeded: 1,
                workers_failed: 0,
            };
            jobs::finish(c, "old", &ending)?;
            Ok(())
        })
        .await
        .unwrap();
    let tallies = super::batch::EndedTallies::default();
    let first = tallies.sample(&store).await.unwrap();
    let sum = &first["sum"];
    assert_eq!(
        (sum.jobs[1], sum.jobs[2]),
        (1, 1),
        "one running, one succeeded"
    );
    assert_eq!((sum.batches.succeeded, sum.batches.queued), (2, 2));

    // The ended job's batches are not read again (a late change does not show)...
    store
        .call(|c| {
            Ok(c.execute(
                "UPDATE batches SET state = 'failed' WHERE job_id = 'old'",
                [],
            )?)
        })
        .await
        .unwrap();
    let again = tallies.sample(&store).await.unwrap();
    assert_eq!(again["sum"].batches.succeeded, 2);
    // ...and a job that is gone (its API was deleted) is forgotten.
    store
        .call(|c| Ok(c.execute_batch("DELETE FROM batches; DELETE FROM jobs;")?))
        .await
        .unwrap();
    assert!(tallies.sample(&store).await.unwrap().is_empty());
}
