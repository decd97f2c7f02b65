//! `cortex wait API [JOB_ID]` and `cortex deploy --wait`: poll the server until every API
//! awaited is live (or a job has ended), fail as soon as one cannot get there, or time out.
//! The rule is in `verdict.rs`; this file is the thin loop that asks the server and prints.

mod progress;
mod report;
mod verdict;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::environment::{self, Target};
use super::output::{print_structured, OutputFormat};
use super::style::printable;
use super::{ExitStatus, WaitArgs};
use crate::api::{ApiResponse, DeployAction, DeployResult, JobStatusResponse};
use crate::client::{Client, ClientError};
use progress::Progress;
use verdict::Verdict;

/// How often the server is asked: a failed `__init__` is reported within this much of the
/// server knowing it.
const POLL: Duration = Duration::from_millis(200);
/// How long the server may stay unreachable (or answer 5xx) before the wait gives up.
const UNREACHABLE_FOR: Duration = Duration::from_secs(30);

/// `--timeout`'s default, as clap shows it.
pub const DEFAULT_TIMEOUT: &str = "10m";

/// An API a wait is for; `before`: its deployment number before the deploy being waited for.
pub struct Awaited {
    pub name: String,
    pub before: Option<i64>,
    /// An answer had another number than `before`: the deploy took effect.
    pub moved: std::cell::Cell<bool>,
}

/// Every API's deployment number, before a deploy (to know its new version when it shows).
pub async fn numbers_before(client: &Client) -> anyhow::Result<HashMap<String, i64>> {
    let apis = client.list_apis().await?;
    Ok(apis
        .into_iter()
        .map(|a| (a.name, a.deployment.number))
        .collect())
}

/// The APIs a deploy created or updated (each to be seen with another number than `before`),
/// and those it found up to date (whatever version runs).
pub fn awaited(results: &[DeployResult], before: &HashMap<String, i64>) -> Vec<Awaited> {
    results
        .iter()
        .filter(|r| r.action != DeployAction::Failed)
        .map(|r| Awaited {
            name: r.name.clone(),
            before: match r.action {
                DeployAction::UpToDate => None,
                _ => before.get(&r.name).copied(),
            },
            moved: Default::default(),
        })
        .collect()
}

/// How the final documents are printed with `-o json|yaml`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One object (`cortex wait API`).
    One,
    /// An array, one per API of a deploy.
    List,
}

pub async fn run(args: WaitArgs) -> anyhow::Result<ExitStatus> {
    let target = environment::connect(args.env.env.as_deref()).await?;
    match &args.job_id {
        Some(job_id) => job(&target, &args.api, job_id, args.timeout, args.output).await,
        None => {
            let awaited = [Awaited {
                name: args.api.clone(),
                before: None,
                moved: Default::default(),
            }];
            apis(&target, &awaited, args.timeout, args.output, Shape::One).await
        }
    }
}

/// A wait's limit, and how to say it (`10m`, `2s`, `1h30m`).
fn limit(timeout: crate::spec::Duration) -> (Instant, String) {
    (Instant::now() + timeout.to_std(), words(timeout.seconds()))
}

/// Seconds as `--timeout` takes them: `2s`, `10m`, `1h30m`, `1m5s`.
fn words(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Errors worth asking again about: the server restarting, overloaded, or briefly away.
fn transient(e: &ClientError) -> bool {
    matches!(e, ClientError::Unreachable { .. }) || e.status().is_some_and(|s| s.is_server_error())
}

/// Asks `f` until it answers, while the server's trouble is [`transient`] and has lasted less
/// than [`UNREACHABLE_FOR`] (and the wait's `deadline` is not past).
async fn ask<T, F, Fut>(deadline: Instant, progress: &mut Progress, f: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let since = Instant::now();
    loop {
        // A server that hangs must not hold the wait past its timeout.
        let left = deadline.saturating_duration_since(Instant::now()).max(POLL);
        let Ok(answer) = tokio::time::timeout(left, f()).await else {
            anyhow::bail!(
                "the cortex server did not answer before the wait's --timeout ran out; check that it runs (`cortex version` asks it)"
            );
        };
        match answer {
            Ok(v) => return Ok(v),
            Err(e)
                if transient(&e)
                    && since.elapsed() < UNREACHABLE_FOR
                    && Instant::now() < deadline =>
            {
                progress.show(&format!("asking again: {e}"));
                tokio::time::sleep(POLL).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What one round of questions found.
enum Round {
    Done,
    Waiting(Vec<(usize, String)>),
    Failed(usize, String),
}

/// Asks about every awaited API once (all of them, so `-o json` shows each); the first that
/// failed decides.
async fn round(
    client: &Client,
    awaited: &[Awaited],
    deadline: Instant,
    progress: &mut Progress,
    docs: &mut Vec<ApiResponse>,
) -> anyhow::Result<Round> {
    docs.clear();
    let (mut waiting, mut failed) = (Vec::new(), None);
    for (i, a) in awaited.iter().enumerate() {
        let api = ask(deadline, progress, || client.get_api(&a.name)).await?;
        if a.before.is_some_and(|n| api.deployment.number != n) {
            a.moved.set(true);
        }
        match verdict::api(&api, a.before, a.moved.get()) {
            Verdict::Done => {}
            Verdict::Waiting(now) => waiting.push((i, now)),
            Verdict::Failed(status) => {
                failed.get_or_insert((i, status));
            }
        }
        docs.push(api);
    }
    Ok(match failed {
        Some((i, status)) => Round::Failed(i, status),
        None if waiting.is_empty() => Round::Done,
        None => Round::Waiting(waiting),
    })
}

/// Waits until every API of `awaited` is live: 0 when they are, 1 (with why on stderr) when
/// one fails or the time is up. `-o json|yaml` prints their documents whichever way it ends.
pub async fn apis(
    target: &Target,
    awaited: &[Awaited],
    timeout: crate::spec::Duration,
    output: OutputFormat,
    shape: Shape,
) -> anyhow::Result<ExitStatus> {
    let (deadline, timeout_words) = limit(timeout);
    let mut progress = Progress::new();
    let mut docs = Vec::new();
    let outcome = loop {
        let r = round(&target.client, awaited, deadline, &mut progress, &mut docs).await;
        match r {
            Ok(Round::Waiting(waiting)) if Instant::now() < deadline => {
                let line: Vec<String> = waiting
                    .iter()
                    .map(|(i, now)| format!("waiting for {}: {now}", awaited[*i].name))
                    .collect();
                progress.show(&line.join("; "));
                tokio::time::sleep(POLL).await;
            }
            other => break other,
        }
    };
    progress.finish();
    let outcome = outcome?;
    let text = match &outcome {
        Round::Done => None,
        Round::Failed(i, status) => {
            Some(report::api_failed(&target.client, &docs[*i], status).await)
        }
        Round::Waiting(waiting) => {
            let pending: Vec<(&ApiResponse, String)> = waiting
                .iter()
                .map(|(i, now)| (&docs[*i], now.clone()))
                .collect();
            Some(report::apis_timed_out(&target.client, &timeout_words, &pending).await)
        }
    };
    let printed = match shape {
        Shape::One => print_structured(output, &docs[0])?,
        Shape::List => print_structured(output, &docs)?,
    };
    match text {
        None => {
            if !printed {
                for api in &docs {
                    let live = format!("{} is live: {}", api.name, api.endpoint);
                    println!("{}", printable(&live));
                }
            }
            Ok(ExitStatus::Success)
        }
        Some(text) => {
            eprint!("{}", printable(&text));
            Ok(ExitStatus::Failure)
        }
    }
}

/// Waits until a job ends: 0 when it succeeded, 1 (with its counts and failed batches on
/// stderr) otherwise or when the time is up. `-o json|yaml` prints its document.
async fn job(
    target: &Target,
    api: &str,
    job_id: &str,
    timeout: crate::spec::Duration,
    output: OutputFormat,
) -> anyhow::Result<ExitStatus> {
    let (deadline, timeout_words) = limit(timeout);
    let client = &target.client;
    let mut progress = Progress::new();
    let outcome = loop {
        let doc: JobStatusResponse = match ask(deadline, &mut progress, || {
            client.job_status(api, job_id, false)
        })
        .await
        {
            Ok(doc) => doc,
            Err(e) => break Err(e),
        };
        match verdict::job(&doc.job_status) {
            Verdict::Waiting(now) if Instant::now() < deadline => {
                progress.show(&format!("waiting for job {job_id} of {api}: {now}"));
                tokio::time::sleep(POLL).await;
            }
            v => break Ok((doc, v)),
        }
    };
    progress.finish();
    let (doc, v) = outcome?;
    let job = &doc.job_status;
    let text = match &v {
        Verdict::Done => None,
        Verdict::Failed(status) => Some(report::job_failed(client, api, job, status).await),
        Verdict::Waiting(now) => Some(report::job_timed_out(&timeout_words, api, job, now)),
    };
    let printed = print_structured(output, &doc)?;
    match text {
        None => {
            if !printed {
                println!("job {job_id} of {api} succeeded");
                print!("{}", printable(&report::job_counts(job)));
            }
            Ok(ExitStatus::Success)
        }
        Some(text) => {
            eprint!("{}", printable(&text));
            Ok(ExitStatus::Failure)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timeouts_read_as_they_are_written() {
        assert_eq!(super::words(0), "0s");
        assert_eq!(super::words(2), "2s");
        assert_eq!(super::words(600), "10m");
        assert_eq!(super::words(5400), "1h30m");
        assert_eq!(super::words(65), "1m5s");
    }
}
