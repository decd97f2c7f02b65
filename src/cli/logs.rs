//! `cortex logs API [JOB_ID] [-f] [--tail N]`: an API's log, or a job's (the server's lines
//! about it and every worker's, `-f` until the job ends).

use std::io::Write;

use anyhow::bail;

use super::environment;
use super::{ExitStatus, LogsArgs};

pub async fn run(args: LogsArgs) -> anyhow::Result<ExitStatus> {
    let target = environment::connect(args.env.env.as_deref()).await?;
    let mut resp = match &args.job_id {
        Some(job_id) => {
            target
                .client
                .job_logs(&args.api, job_id, args.follow)
                .await?
        }
        None => {
            target
                .client
                .logs(&args.api, args.follow, args.tail)
                .await?
        }
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
    Ok(ExitStatus::Success)
}
