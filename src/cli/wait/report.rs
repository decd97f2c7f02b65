//! What a wait that did not end well writes on stderr: the reason, the errors the server
//! knows, and the last lines of the replica's (or the job's) log, so a CI log says why
//! without a second command.

use std::collections::VecDeque;
use std::time::Duration;

use crate::api::{ApiResponse, JobStatus};
use crate::client::Client;

/// Lines of log shown under a failure.
const LOG_LINES: usize = 20;
/// Failed batches listed under a job's failure.
const DEAD_LETTERS: usize = 10;
/// How long the log may take to arrive before the report goes without it.
const LOG_WAIT: Duration = Duration::from_secs(3);

/// An API that failed: `error: iris is error (deployment 2): <why>`, the other errors of its
/// newest version and its deployment, and the last lines of its log.
pub async fn api_failed(client: &Client, api: &ApiResponse, status: &str) -> String {
    let reasons = reasons(api);
    let mut out = format!(
        "error: {} is {status} (deployment {})",
        api.name, api.deployment.number
    );
    match reasons.first() {
        Some(why) => out.push_str(&format!(": {why}\n")),
        None => out.push('\n'),
    }
    out.push_str(&listed(reasons.get(1..).unwrap_or_default()));
    out.push_str(&api_log(client, api).await);
    out
}

/// A wait that ran out of time: what it waited for, what each API is, and why if it knows.
pub async fn apis_timed_out(
    client: &Client,
    timeout: &str,
    pending: &[(&ApiResponse, String)],
) -> String {
    let names: Vec<&str> = pending.iter().map(|(a, _)| a.name.as_str()).collect();
    let mut out = format!(
        "error: timed out after {timeout} waiting for {} to be live\n",
        names.join(", ")
    );
    for (api, now) in pending {
        out.push_str(&format!(
            "{} (deployment {}) is {now}\n",
            api.name, api.deployment.number
        ));
        out.push_str(&listed(&reasons(api)));
        out.push_str(&api_log(client, api).await);
    }
    out.push_str("wait longer with --timeout, e.g. --timeout 30m\n");
    out
}

/// Why an API is not live, one line each: the first lines of its errors (the log below has
/// the rest), then the errors its current deployment reported, each once.
fn reasons(api: &ApiResponse) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let reported = api
        .deployment
        .history
        .iter()
        .filter(|m| m.deployment == api.deployment.number && m.level == "error")
        .map(|m| &m.message);
    for e in api.errors.iter().chain(reported) {
        let line = e
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        if !line.is_empty() && !all.iter().any(|known| known.contains(line)) {
            all.push(line.to_string());
        }
    }
    all
}

/// `errors:` and one bullet per line (nothing when there are none).
fn listed(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut out = "errors:\n".to_string();
    for line in lines {
        out.push_str(&format!("  - {line}\n"));
    }
    out
}

/// The last lines of a RealtimeAPI's log (others run no replica of their own).
async fn api_log(client: &Client, api: &ApiResponse) -> String {
    if api.kind != crate::api::ApiKind::RealtimeAPI {
        return String::new();
    }
    let lines = match client.logs(&api.name, false, Some(LOG_LINES)).await {
        Ok(resp) => last_lines(resp).await,
        Err(_) => Vec::new(),
    };
    framed(&format!("cortex logs {}", api.name), &lines)
}

/// The last lines of a log, under a title naming the command that shows all of it.
fn framed(command: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut out = format!("last {} log lines ({command}):\n", lines.len());
    for line in lines {
        out.push_str(&format!("  | {line}\n"));
    }
    out
}

/// The last [`LOG_LINES`] lines of a log stream, read for at most [`LOG_WAIT`].
async fn last_lines(mut resp: reqwest::Response) -> Vec<String> {
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut partial: Vec<u8> = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            partial.extend_from_slice(&chunk);
            while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                push_line(
                    &mut tail,
                    String::from_utf8_lossy(&line[..end]).into_owned(),
                );
            }
        }
    };
    let _ = tokio::time::timeout(LOG_WAIT, read).await;
    if !partial.is_empty() {
        push_line(&mut tail, String::from_utf8_lossy(&partial).into_owned());
    }
    tail.into()
}

fn push_line(tail: &mut VecDeque<String>, line: String) {
    if tail.len() == LOG_LINES {
        tail.pop_front();
    }
    tail.push_back(line.trim_end_matches('\r').to_string());
}

/// A job that ended badly: its status, counts, message, failed batches and last log lines.
pub async fn job_failed(client: &Client, api: &str, job: &JobStatus, status: &str) -> String {
    let mut out = format!("error: job {} of {api} ended: {status}\n", job.spec.job_id);
    out.push_str(&job_counts(job));
    if let Some(m) = &job.message {
        out.push_str(&format!("  why: {m}\n"));
    }
    if !job.dead_letters.is_empty() {
        out.push_str("failed batches:\n");
        for d in job.dead_letters.iter().take(DEAD_LETTERS) {
            let error = d.error.as_deref().unwrap_or("no error recorded");
            // A traceback's last line says what was raised.
            let last = error.lines().last().unwrap_or(error);
            let times = match d.receive_count {
                1 => "once".to_string(),
                n => format!("{n} times"),
            };
            out.push_str(&format!(
                "  {}-{} (delivered {times}): {last}\n",
                job.spec.job_id, d.batch
            ));
        }
        let more = job.batch_metrics.failed as usize;
        if more > DEAD_LETTERS {
            out.push_str(&format!(
                "  ({more} in all: cortex get {api} {} --failed)\n",
                job.spec.job_id
            ));
        }
    }
    let lines = match client.job_logs(api, &job.spec.job_id, false, None).await {
        Ok(resp) => last_lines(resp).await,
        Err(_) => Vec::new(),
    };
    out.push_str(&framed(
        &format!("cortex logs {api} {}", job.spec.job_id),
        &lines,
    ));
    out
}

/// `  batches: 3 succeeded, 3 failed, 6 in all; workers: ...`.
pub fn job_counts(job: &JobStatus) -> String {
    let m = &job.batch_metrics;
    let w = &job.worker_stats;
    format!(
        "  batches: {} succeeded, {} failed, {} in all\n  workers: {} running, {} succeeded, {} failed, {} stalled\n",
        m.succeeded, m.failed, m.total, w.running, w.succeeded, w.failed, w.stalled
    )
}

/// A job wait that ran out of time.
pub fn job_timed_out(timeout: &str, api: &str, job: &JobStatus, now: &str) -> String {
    format!(
        "error: timed out after {timeout} waiting for job {} of {api} to end; it is {now}\n{}wait longer with --timeout, e.g. --timeout 1h, or stop it with `cortex delete {api} {}`\n",
        job.spec.job_id,
        job_counts(job),
        job.spec.job_id
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_log_tail_keeps_the_last_lines() {
        let mut tail = std::collections::VecDeque::new();
        for i in 0..(super::LOG_LINES + 5) {
            super::push_line(&mut tail, format!("line {i}\r"));
        }
        assert_eq!(tail.len(), super::LOG_LINES);
        assert_eq!(tail[0], "line 5");
    }
}
