//! `cortex logs API [JOB_ID] [-f] [--tail N]`.

use std::io::Write;

use anyhow::bail;

use super::environment;
use super::{ExitStatus, LogsArgs};

pub async fn run(args: LogsArgs) -> anyhow::Result<ExitStatus> {
    if args.job_id.is_some() {
        bail!("batch jobs are not supported by this version of cortex yet; `cortex logs <api>` shows a RealtimeAPI's logs");
    }
    let target = environment::connect(args.env.env.as_deref()).await?;
    let mut resp = target
        .client
        .logs(&args.api, args.follow, args.tail)
        .await?;
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
