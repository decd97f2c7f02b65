//! What `cortex get` shows of BatchAPIs: the list table, an API's jobs table, and one job
//! (header, `batch stats`, `worker stats`, failed batches), in cortex's layout.

use crate::api::{ApiResponse, JobStatus};
use crate::batch::status::JobStatus as Status;
use crate::clock::{now, parse_rfc3339};

use super::render;

/// How many jobs `cortex get API` lists: every running one, then the most recent.
const JOBS_SHOWN: usize = 10;
/// How many failed batches `cortex get API JOB` lists without `--failed`.
const DEAD_LETTERS_SHOWN: usize = 10;

/// The words of a status string (`status_running` → `running`).
fn words(status: &str) -> &str {
    Status::parse(status).map_or(status, |s| s.message())
}

fn running(status: &str) -> bool {
    Status::parse(status).is_some_and(|s| !s.is_terminal())
}

/// Seconds between two RFC 3339 times, or until now.
fn seconds_between(start: &str, end: Option<&str>) -> i64 {
    let start = parse_rfc3339(start).unwrap_or(0) / 1_000_000_000;
    let end = end
        .and_then(parse_rfc3339)
        .map_or_else(now, |ns| ns / 1_000_000_000);
    end - start
}

/// The batch list: `batch api`, `running jobs`, `latest job id`, `last update` (and `env`).
pub fn list_table(apis: &[&ApiResponse], envs: Option<&[&str]>) -> String {
    let now = now();
    let mut headers = Vec::new();
    if envs.is_some() {
        headers.push("env");
    }
    headers.extend(["batch api", "running jobs", "latest job id", "last update"]);
    let rows: Vec<Vec<String>> = apis
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut row = Vec::new();
            if let Some(envs) = envs {
                row.push(envs.get(i).copied().unwrap_or_default().to_string());
            }
            let summary = a.batch.clone().unwrap_or_default();
            let latest = match (&summary.latest_job_id, &summary.latest_job_created_time) {
                (Some(id), Some(t)) => {
                    let created = parse_rfc3339(t).unwrap_or(0) / 1_000_000_000;
                    format!("{id} (submitted {} ago)", render::age(created, now))
                }
                (Some(id), None) => id.clone(),
                _ => "-".to_string(),
            };
            row.extend([
                a.name.clone(),
                summary.running_jobs.to_string(),
                latest,
                render::age(a.last_updated, now),
            ]);
            row
        })
        .collect();
    render::table(&headers, &rows)
}

/// `cortex get <batch-api>`: its jobs (every running one and the most recent, 10 in all),
/// then its endpoint and configuration.
pub fn api_text(api: &ApiResponse, jobs: &[JobStatus]) -> String {
    let mut shown: Vec<&JobStatus> = jobs.iter().filter(|j| running(&j.status)).collect();
    for j in jobs.iter().filter(|j| !running(&j.status)) {
        if shown.len() >= JOBS_SHOWN {
            break;
        }
        shown.push(j);
    }
    shown.sort_by(|a, b| a.spec.job_id.cmp(&b.spec.job_id));
    let mut out = if shown.is_empty() {
        "no submitted jobs\n".to_string()
    } else {
        let show_failed = shown.iter().any(|j| j.batch_metrics.failed > 0);
        let mut headers = vec!["job id", "status", "progress"];
        if show_failed {
            headers.push("failed");
        }
        headers.extend(["start time", "duration"]);
        let rows: Vec<Vec<String>> = shown
            .iter()
            .map(|j| {
                let mut row = vec![
                    j.spec.job_id.clone(),
                    words(&j.status).to_string(),
                    format!("{}/{}", j.batch_metrics.succeeded, j.spec.total_batch_count),
                ];
                if show_failed {
                    row.push(j.batch_metrics.failed.to_string());
                }
                row.extend([
                    render::utc_time(&j.start_time),
                    render::go_duration(seconds_between(&j.start_time, j.end_time.as_deref())),
                ]);
                row
            })
            .collect();
        format!("{}\n", render::table(&headers, &rows))
    };
    if jobs.len() > shown.len() {
        out.push_str(&format!(
            "({} older job(s) not shown; `cortex get {} -o json` lists them all)\n",
            jobs.len() - shown.len(),
            api.name
        ));
    }
    out.push_str(&format!("\nendpoint: {}\n", api.endpoint));
    out.push_str(&format!(
        "example: curl {} -X POST -H \"Content-Type: application/json\" -d '{{\"workers\": 1, \"item_list\": {{\"items\": [1, 2, 3], \"batch_size\": 2}}}}'\n",
        api.endpoint
    ));
    out.push_str(&render::configuration("batch api configuration", &api.spec));
    out
}

/// `cortex get <batch-api> <job_id>`: the header, `batch stats`, `worker stats`, the failed
/// batches (all of them with `all_failed`), the job's endpoint and its configuration.
pub fn job_text(j: &JobStatus, endpoint: &str, all_failed: bool) -> String {
    let status = Status::parse(&j.status);
    let mut out = format!("job id: {}\nstatus: {}\n", j.spec.job_id, words(&j.status));
    if let Some(message) = &j.message {
        out.push_str(&format!("message: {message}\n"));
    }
    out.push_str(&format!(
        "\nstart time: {}\nend time:   {}\nduration:   {}\n",
        render::utc_time(&j.start_time),
        j.end_time
            .as_deref()
            .map_or("-".to_string(), render::utc_time),
        render::go_duration(seconds_between(&j.start_time, j.end_time.as_deref()))
    ));
    let m = &j.batch_metrics;
    out.push_str(&format!(
        "\nbatch stats\n{}\n",
        render::table(
            &["total", "succeeded", "failed", "avg time per batch"],
            &[vec![
                m.total.to_string(),
                m.succeeded.to_string(),
                m.failed.to_string(),
                m.avg_time_per_batch
                    .map_or("-".to_string(), render::go_duration_ms),
            ]],
        )
    ));
    match status {
        Some(Status::Enqueuing) => {
            out.push_str("\nstill enqueuing, workers have not been allocated for this job yet\n")
        }
        Some(Status::Running) => {
            let w = &j.worker_stats;
            let mut headers = vec!["requested"];
            let mut row = vec![j.spec.workers.to_string()];
            for (name, n, hide_zero) in [
                ("pending", w.pending, true),
                ("initializing", w.initializing, true),
                ("stalled", w.stalled, true),
                ("running", w.running, false),
                ("failed", w.failed, true),
                ("succeeded", w.succeeded, false),
            ] {
                if n > 0 || !hide_zero {
                    headers.push(name);
                    row.push(n.to_string());
                }
            }
            out.push_str(&format!(
                "\nworker stats\n{}\n",
                render::table(&headers, &[row])
            ));
        }
        _ => out.push_str(
            "\nworker stats are not available because this job is not currently running\n",
        ),
    }
    if !j.dead_letters.is_empty() {
        let limit = if all_failed {
            usize::MAX
        } else {
            DEAD_LETTERS_SHOWN
        };
        let rows: Vec<Vec<String>> = j
            .dead_letters
            .iter()
            .take(limit)
            .map(|d| {
                vec![
                    format!("{}-{}", j.spec.job_id, d.batch),
                    d.receive_count.to_string(),
                    d.error.clone().unwrap_or_else(|| "-".to_string()),
                ]
            })
            .collect();
        out.push_str(&format!(
            "\nfailed batches\n{}\n",
            render::table(&["batch id", "deliveries", "last error"], &rows)
        ));
        let hidden = (m.failed as usize).saturating_sub(rows.len());
        if hidden > 0 {
            out.push_str(&format!(
                "({hidden} more; `cortex get {} {} --failed` lists them all)\n",
                j.spec.api_name, j.spec.job_id
            ));
        }
    }
    out.push_str(&format!("\njob endpoint: {endpoint}/{}\n", j.spec.job_id));
    out.push_str(&format!(
        "\njob configuration\n{}\n",
        serde_json::to_string_pretty(&j.spec).unwrap_or_default()
    ));
    out
}
