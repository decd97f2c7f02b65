//! The tables of `cortex get` without an API: realtime, batch and splitter APIs, each table
//! only when it has rows, with an `env` column when several environments are listed.

use super::{get_batch, get_splitter, render};
use crate::api::{ApiKind, ApiResponse};
use crate::clock::now;

/// The realtime table and the batch table (each only when it has rows), with an `env`
/// column when `envs` is given.
pub(super) fn tables(apis: &[&ApiResponse], envs: Option<&[&str]>) -> String {
    let (mut realtime, mut batch, mut splitters) = (Vec::new(), Vec::new(), Vec::new());
    let (mut realtime_envs, mut batch_envs, mut splitter_envs) =
        (Vec::new(), Vec::new(), Vec::new());
    for (i, api) in apis.iter().enumerate() {
        let env = envs.and_then(|e| e.get(i).copied()).unwrap_or_default();
        match api.kind {
            ApiKind::BatchAPI => {
                batch.push(*api);
                batch_envs.push(env);
            }
            ApiKind::TrafficSplitter => {
                splitters.push(*api);
                splitter_envs.push(env);
            }
            ApiKind::RealtimeAPI => {
                realtime.push(*api);
                realtime_envs.push(env);
            }
        }
    }
    let mut parts = Vec::new();
    if !realtime.is_empty() {
        parts.push(realtime_table(
            &realtime,
            true,
            envs.map(|_| realtime_envs.as_slice()),
        ));
    }
    if !batch.is_empty() {
        parts.push(get_batch::list_table(
            &batch,
            envs.map(|_| batch_envs.as_slice()),
        ));
    }
    if !splitters.is_empty() {
        parts.push(get_splitter::list_table(
            &splitters,
            envs.map(|_| splitter_envs.as_slice()),
        ));
    }
    format!(
        "{}
",
        parts.join("\n\n")
    )
}

/// Ready replicas still running an older spec (they serve while an update starts).
fn stale(api: &ApiResponse) -> usize {
    api.replicas
        .iter()
        .filter(|r| !r.up_to_date && r.phase == crate::api::ReplicaPhase::Ready)
        .count()
}

/// Replicas of the latest spec that failed (crash-looping, or killed for memory again and
/// again).
fn failed(api: &ApiResponse) -> usize {
    api.replicas
        .iter()
        .filter(|r| r.up_to_date && r.phase == crate::api::ReplicaPhase::Failed)
        .count()
}

/// The realtime table; columns that only ever hold zero are hidden, as cortex does. `envs`,
/// when given, adds an `env` column (one entry per API).
pub(super) fn realtime_table(
    apis: &[&ApiResponse],
    with_name: bool,
    envs: Option<&[&str]>,
) -> String {
    let now = now();
    let show_4xx = apis.iter().any(|a| a.metrics.code_4xx > 0);
    let show_5xx = apis.iter().any(|a| a.metrics.code_5xx > 0);
    let show_stale = apis.iter().any(|a| stale(a) > 0);
    let show_failed = apis.iter().any(|a| failed(a) > 0);
    let mut headers = Vec::new();
    if envs.is_some() {
        headers.push("env");
    }
    if with_name {
        headers.push("realtime api");
    }
    headers.extend(["status", "up-to-date"]);
    if show_stale {
        headers.push("stale");
    }
    headers.push("requested");
    if show_failed {
        headers.push("failed");
    }
    headers.extend(["last update", "avg request", "2XX"]);
    if show_4xx {
        headers.push("4XX");
    }
    if show_5xx {
        headers.push("5XX");
    }
    let count = |n: u64| {
        if n == 0 {
            "-".to_string()
        } else {
            n.to_string()
        }
    };
    let rows: Vec<Vec<String>> = apis
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut row = Vec::new();
            if let Some(envs) = envs {
                row.push(envs.get(i).copied().unwrap_or_default().to_string());
            }
            if with_name {
                row.push(a.name.clone());
            }
            row.extend([a.status.to_string(), a.up_to_date.to_string()]);
            if show_stale {
                row.push(stale(a).to_string());
            }
            row.push(a.requested.to_string());
            if show_failed {
                row.push(failed(a).to_string());
            }
            row.extend([
                render::age(a.last_updated, now),
                render::latency(a.metrics.latency_ms_avg),
                count(a.metrics.code_2xx),
            ]);
            if show_4xx {
                row.push(count(a.metrics.code_4xx));
            }
            if show_5xx {
                row.push(count(a.metrics.code_5xx));
            }
            row
        })
        .collect();
    render::table(&headers, &rows)
}
