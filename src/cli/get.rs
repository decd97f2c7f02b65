//! `cortex get [API] [JOB_ID] [--watch]`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::bail;

use super::environment::{self, Target};
use super::output::OutputFormat;
use super::{render, ExitStatus, GetArgs};
use crate::api::ApiResponse;
use crate::store::now;

pub async fn run(args: GetArgs) -> anyhow::Result<ExitStatus> {
    if args.job_id.is_some() {
        bail!("batch jobs are not supported by this version of cortex yet; `cortex get <api>` describes a RealtimeAPI");
    }
    let target = environment::connect(args.env.env.as_deref()).await?;
    if !args.watch {
        let text = render_once(&target, &args).await?;
        print!("{text}");
        return Ok(ExitStatus::Success);
    }
    watch(&target, &args).await
}

/// Re-runs every 2 seconds: in place on a terminal, as repeated blocks otherwise.
async fn watch(target: &Target, args: &GetArgs) -> anyhow::Result<ExitStatus> {
    let tty = std::io::stdout().is_terminal();
    let mut shown_lines = 0usize;
    let command: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "-w" && a != "--watch")
        .collect();
    loop {
        let body = match render_once(target, args).await {
            Ok(text) => text,
            Err(e) => format!("error: {e}\n"),
        };
        let header = format!("$ cortex {}    {}\n\n", command.join(" "), clock());
        let mut out = std::io::stdout().lock();
        if tty {
            if shown_lines > 0 {
                // Up to where the last frame began, then clear to the end of the screen.
                write!(out, "\x1b[{shown_lines}A\x1b[J")?;
            }
            let frame = format!("{header}{body}");
            shown_lines = frame.lines().count();
            write!(out, "{frame}")?;
        } else {
            writeln!(out, "{header}{body}")?;
        }
        out.flush()?;
        drop(out);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Local wall-clock time as `3:04:05pm` (UTC offset unknown without a tz database: UTC).
fn clock() -> String {
    let secs = now().rem_euclid(86400);
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let (h12, ampm) = match h {
        0 => (12, "am"),
        1..=11 => (h, "am"),
        12 => (12, "pm"),
        _ => (h - 12, "pm"),
    };
    format!("{h12}:{m:02}:{s:02}{ampm} UTC")
}

async fn render_once(target: &Target, args: &GetArgs) -> anyhow::Result<String> {
    match &args.api {
        None => {
            let apis = target.client.list_apis().await?;
            if let Some(text) = structured(args.output, &apis)? {
                return Ok(text);
            }
            Ok(list_text(&apis))
        }
        Some(name) => {
            let api = target.client.get_api(name).await?;
            if let Some(text) = structured(args.output, &api)? {
                return Ok(text);
            }
            Ok(api_text(&api))
        }
    }
}

fn structured<T: serde::Serialize>(format: OutputFormat, v: &T) -> anyhow::Result<Option<String>> {
    Ok(match format {
        OutputFormat::Pretty => None,
        OutputFormat::Json => Some(serde_json::to_string_pretty(v)? + "\n"),
        OutputFormat::Yaml => Some(serde_yaml::to_string(v)?),
    })
}

/// The realtime table; columns that only ever hold zero are hidden, as cortex does.
fn realtime_table(apis: &[&ApiResponse], with_name: bool) -> String {
    let now = now();
    let show_4xx = apis.iter().any(|a| a.metrics.code_4xx > 0);
    let show_5xx = apis.iter().any(|a| a.metrics.code_5xx > 0);
    let mut headers = Vec::new();
    if with_name {
        headers.push("realtime api");
    }
    headers.extend([
        "status",
        "up-to-date",
        "requested",
        "last update",
        "avg request",
        "2XX",
    ]);
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
        .map(|a| {
            let mut row = Vec::new();
            if with_name {
                row.push(a.name.clone());
            }
            row.extend([
                a.status.to_string(),
                a.up_to_date.to_string(),
                a.requested.to_string(),
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

fn list_text(apis: &[ApiResponse]) -> String {
    if apis.is_empty() {
        return "no apis are deployed\n".to_string();
    }
    let all: Vec<&ApiResponse> = apis.iter().collect();
    format!("{}\n", realtime_table(&all, true))
}

fn api_text(api: &ApiResponse) -> String {
    let mut out = realtime_table(&[api], false);
    out.push_str("\n\n");
    out.push_str(&format!("endpoint: {}\n", api.endpoint));
    out.push_str(&format!(
        "example curl: curl {} -X POST -H \"Content-Type: application/json\" -d @sample.json\n",
        api.endpoint
    ));
    if !api.errors.is_empty() {
        out.push_str("\nerrors:\n");
        for e in &api.errors {
            for (i, line) in e.lines().enumerate() {
                let bullet = if i == 0 { "- " } else { "  " };
                out.push_str(&format!("  {bullet}{line}\n"));
            }
        }
    }
    out.push_str("\nconfiguration\n");
    let yaml = serde_yaml::to_string(&api.spec).unwrap_or_default();
    for line in yaml.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}
