//! `cortex get [API] [JOB_ID] [--watch]`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::environment::{self, Target};
use super::failure::{self, Refusal};
use super::get_tables::realtime_table;
use super::output::{structured, OutputFormat};
use super::{get_batch, get_envs, get_splitter, render, style, ExitStatus, GetArgs};
use crate::api::{ApiKind, ApiResponse};
use crate::clock::now;

pub async fn run(args: GetArgs) -> anyhow::Result<ExitStatus> {
    let source = match environment::list_all_environments(args.env.env.as_deref())? {
        Some(envs) if args.api.is_none() => Source::All(envs),
        _ => Source::One(environment::connect(args.env.env.as_deref()).await?),
    };
    if !args.watch {
        let text = render_once(&source, &args).await?;
        print!("{}", shown(args.output, &text));
        return Ok(ExitStatus::Success);
    }
    watch(&source, &args).await
}

/// What `cortex get` prints: for people, its text made printable (it is made of what the
/// server sent); documents as they are (JSON and YAML escape what they hold).
fn shown(format: OutputFormat, text: &str) -> std::borrow::Cow<'_, str> {
    match format {
        OutputFormat::Pretty => style::printable(text),
        _ => std::borrow::Cow::Borrowed(text),
    }
}

/// Where `cortex get` reads from: one environment, or every configured one.
enum Source {
    One(Target),
    All(Vec<String>),
}

/// Re-runs every 2 seconds: in place on a terminal, as repeated blocks otherwise, as one
/// document per refresh with `-o json|yaml`.
async fn watch(source: &Source, args: &GetArgs) -> anyhow::Result<ExitStatus> {
    if args.output != OutputFormat::Pretty {
        return watch_documents(source, args).await;
    }
    let tty = std::io::stdout().is_terminal();
    let mut shown_lines = 0usize;
    let command: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "-w" && a != "--watch")
        .collect();
    loop {
        let body = match render_once(source, args).await {
            Ok(text) => text,
            Err(e) => format!("error: {e}\n"),
        };
        let body = style::printable(&body);
        let header = format!("$ cortex {}    {}\n\n", command.join(" "), clock());
        let mut out = std::io::stdout().lock();
        if tty {
            let frame = format!("{header}{body}");
            let redraw = in_place(&frame, shown_lines);
            shown_lines = frame.lines().count();
            // One write: the terminal never shows a cleared or half-drawn frame.
            out.write_all(redraw.as_bytes())?;
        } else {
            writeln!(out, "{header}{body}")?;
        }
        out.flush()?;
        drop(out);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `-w -o json|yaml`: one document per refresh (a line of JSON, or a YAML document), the
/// error document when a refresh fails; no header.
async fn watch_documents(source: &Source, args: &GetArgs) -> anyhow::Result<ExitStatus> {
    loop {
        let doc = match render_once(source, args).await {
            Ok(text) => text,
            Err(e) => failure::document(args.output, &e).unwrap_or_default(),
        };
        let mut out = std::io::stdout().lock();
        out.write_all(doc.as_bytes())?;
        out.flush()?;
        drop(out);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// What redraws `frame` over the `previous` lines drawn last: up to where they began, then
/// each line over the old one (clearing what is left of it), then whatever the old frame had
/// below. Nothing is cleared before it is drawn over, so nothing flickers.
fn in_place(frame: &str, previous: usize) -> String {
    let mut out = String::with_capacity(frame.len() + 8 * previous + 16);
    if previous > 0 {
        out.push_str(&format!("\x1b[{previous}A\r"));
    }
    for line in frame.lines() {
        out.push_str(line);
        out.push_str("\x1b[K\n");
    }
    out.push_str("\x1b[J");
    out
}

/// Local wall-clock time as cortex prints it: `3:04:05pm CET` (from the C library's idea of
/// the local zone: `TZ` or /etc/localtime).
fn clock() -> String {
    let now = now() as libc::time_t;
    // SAFETY: localtime_r writes only into the `tm` we pass; `tm_zone` points into static
    // storage of the C library and is read right away.
    let (h, m, s, zone) = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return String::new();
        }
        let zone = if tm.tm_zone.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(tm.tm_zone)
                .to_string_lossy()
                .into_owned()
        };
        (tm.tm_hour, tm.tm_min, tm.tm_sec, zone)
    };
    let (h12, ampm) = match h {
        0 => (12, "am"),
        1..=11 => (h, "am"),
        12 => (12, "pm"),
        _ => (h - 12, "pm"),
    };
    format!("{h12}:{m:02}:{s:02}{ampm} {zone}")
        .trim_end()
        .to_string()
}

async fn render_once(source: &Source, args: &GetArgs) -> anyhow::Result<String> {
    let target = match source {
        Source::All(envs) => return get_envs::all(envs, args).await,
        Source::One(target) => target,
    };
    let Some(name) = &args.api else {
        return get_envs::one(target, args).await;
    };
    let api = target.client.get_api(name).await?;
    if api.kind == ApiKind::BatchAPI {
        return batch_text(target, &api, args).await;
    }
    if args.job_id.is_some() {
        return Err(Refusal::InvalidRequest(format!(
            "{name} is a {}: only BatchAPIs have jobs; run `cortex get {name}`",
            api.kind
        ))
        .into());
    }
    if let Some(text) = structured(args.output, args.watch, &api)? {
        return Ok(text);
    }
    if api.kind == ApiKind::TrafficSplitter {
        return Ok(get_splitter::splitter_text(&target.client, &api).await);
    }
    Ok(api_text(&api))
}

/// A BatchAPI's jobs (`-o json`: the API's fields and `jobs`), or one job (`-o json`: the seed's
/// `{"job_status": ...}`).
async fn batch_text(target: &Target, api: &ApiResponse, args: &GetArgs) -> anyhow::Result<String> {
    match &args.job_id {
        Some(job_id) => {
            let status = target
                .client
                .job_status(&api.name, job_id, args.failed)
                .await?;
            if let Some(text) = structured(args.output, args.watch, &status)? {
                return Ok(text);
            }
            Ok(get_batch::job_text(
                &status.job_status,
                &api.endpoint,
                args.failed,
            ))
        }
        None => {
            let jobs = target.client.list_jobs(&api.name).await?.jobs;
            #[derive(serde::Serialize)]
            struct BatchApi<'a> {
                #[serde(flatten)]
                api: &'a ApiResponse,
                jobs: &'a [crate::api::JobStatus],
            }
            if let Some(text) = structured(args.output, args.watch, &BatchApi { api, jobs: &jobs })?
            {
                return Ok(text);
            }
            Ok(get_batch::api_text(api, &jobs))
        }
    }
}

/// The deployment's own reports: its status as the Model Bazaar API gives it, what it
/// reported, and the warnings and errors of every deployment with their times.
fn deployment_text(d: &crate::api::DeploymentInfo) -> String {
    let mut out = format!("\ndeployment {}: {}\n", d.number, d.status);
    if let Some(name) = &d.deployment_name {
        out.push_str(&format!("  also at: /{name}\n"));
    }
    if let Some(m) = &d.metadata {
        out.push_str(&format!("  metadata: {m}\n"));
    }
    let now = now();
    for m in &d.history {
        let when = if m.deployment == d.number {
            format!("{} ago", render::age(m.time, now))
        } else {
            format!(
                "deployment {}, {} ago",
                m.deployment,
                render::age(m.time, now)
            )
        };
        out.push_str(&format!("  {} ({when}): {}\n", m.level, m.message));
    }
    out
}

fn api_text(api: &ApiResponse) -> String {
    let mut out = realtime_table(&[api], false, None);
    out.push_str("\n\n");
    out.push_str(&format!("endpoint: {}\n", api.endpoint));
    out.push_str(&format!(
        "example curl: curl {} -X POST -H \"Content-Type: application/json\" -d @sample.json\n",
        api.endpoint
    ));
    if let Some(engine) = &api.engine {
        out.push('\n');
        out.push_str(&replicas_text(engine, api));
    }
    if !api.errors.is_empty() {
        out.push_str("\nerrors:\n");
        for e in &api.errors {
            for (i, line) in e.lines().enumerate() {
                let bullet = if i == 0 { "- " } else { "  " };
                out.push_str(&format!("  {bullet}{line}\n"));
            }
        }
    }
    out.push_str(&deployment_text(&api.deployment));
    out.push_str(&render::configuration("configuration", &api.spec));
    out
}

/// Where the replicas run, when an engine other than the server's own runs them: the engine,
/// then one line per replica with its node.
fn replicas_text(engine: &str, api: &ApiResponse) -> String {
    let mut out = format!("engine: {engine}\n");
    let rows: Vec<Vec<String>> = api
        .replicas
        .iter()
        .map(|r| {
            let node = r.node.as_deref().unwrap_or("-");
            vec![
                r.id.clone(),
                serde_json::to_value(r.phase)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                node.get(..12).unwrap_or(node).to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&render::table(&["replica", "phase", "node"], &rows));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_redraw_overwrites_in_place_and_clears_only_what_is_left() {
        assert_eq!(super::in_place("a\nb\n", 0), "a\x1b[K\nb\x1b[K\n\x1b[J");
        assert_eq!(super::in_place("c\n", 2), "\x1b[2A\rc\x1b[K\n\x1b[J");
    }
}
