//! `cortex logs API [JOB_ID] [-f|--no-follow] [--tail N]`: an API's log, or a job's (the
//! server's lines about it and every worker's). On a terminal it streams, as upstream cortex
//! did; piped (scripts, CI) it prints what there is and exits, unless `-f`.

use std::io::{IsTerminal, Write};

use anyhow::bail;

use super::environment;
use super::{ExitStatus, LogsArgs};

pub async fn run(args: LogsArgs) -> anyhow::Result<ExitStatus> {
    let target = environment::connect(args.env.env.as_deref()).await?;
    let follow = args.follow || (!args.no_follow && std::io::stdout().is_terminal());
    let mut resp = match &args.job_id {
        Some(job_id) => target.client.job_logs(&args.api, job_id, follow).await?,
        None => target.client.logs(&args.api, follow, args.tail).await?,
    };
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => bail!("the log stream broke: {e}"),
        };
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(&chunk).and_then(|()| out.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e.into());
        }
    }
    if follow && args.job_id.is_none() {
        // A followed api's stream ends when the api is deleted, or when the server stops.
        let why = match target.client.get_api(&args.api).await {
            Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => {
                format!("{} was deleted: no more logs will come", args.api)
            }
            _ => "the server ended the log stream (it stopped or restarted); run the command again to go on".to_string(),
        };
        eprintln!("cortex: {why}");
    }
    Ok(ExitStatus::Success)
}
