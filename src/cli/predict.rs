//! `cortex predict API JSON_FILE`: posts the file to the API's endpoint and prints the answer,
//! as cortex did through v0.25 (a refused prediction exits 1 with the server's reason); and
//! `cortex refresh API`, which restarts an API's replicas with a rolling update.

use std::io::Write;

use anyhow::{bail, Context};

use super::environment;
use super::output::print_structured;
use super::{ExitStatus, PredictArgs, RefreshArgs};

pub async fn run(args: PredictArgs) -> anyhow::Result<ExitStatus> {
    let body = std::fs::read(&args.json_file)
        .with_context(|| format!("cannot read {}", args.json_file.display()))?;
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
        bail!(
            "{} is not JSON ({e}); the payload must be a JSON document",
            args.json_file.display()
        );
    }
    let target = environment::connect(args.env.env.as_deref()).await?;
    let api = target.client.get_api(&args.api).await?;
    if api.batch.is_some() {
        bail!(
            "{} is a BatchAPI: submit a job to {} instead (see `cortex get {}`)",
            args.api,
            api.endpoint,
            args.api
        );
    }
    let (status, answer) = target.client.predict(&api.endpoint, body).await?;
    if !status.is_success() {
        let why = serde_json::from_slice::<crate::api::ErrorBody>(&answer)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&answer).into_owned());
        bail!("{} answered {status}: {why}", args.api);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&answer)?;
    if !answer.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(ExitStatus::Success)
}

pub async fn refresh(args: RefreshArgs) -> anyhow::Result<ExitStatus> {
    let target = environment::connect(args.env.env.as_deref()).await?;
    let resp = target.client.refresh_api(&args.api, args.force).await?;
    if !print_structured(args.output, &resp)? {
        println!("{}", super::style::printable(&resp.message));
    }
    Ok(ExitStatus::Success)
}
