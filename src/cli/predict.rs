//! `cortex predict API JSON_FILE`: posts the file to the API's endpoint and prints the answer,
//! as cortex did through v0.25. A refused prediction exits 1 with the server's reason.

use std::io::Write;

use anyhow::{bail, Context};

use super::environment;
use super::{ExitStatus, PredictArgs};

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
