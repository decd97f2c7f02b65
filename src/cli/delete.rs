//! `cortex delete API [JOB_ID]`: deletes an API, or stops one of its jobs.

use super::environment;
use super::output::print_structured;
use super::prompt::confirm;
use super::style::printable;
use super::{DeleteArgs, ExitStatus};

pub async fn run(args: DeleteArgs) -> anyhow::Result<ExitStatus> {
    let target = environment::connect(args.env.env.as_deref()).await?;
    if let Some(job_id) = &args.job_id {
        let resp = target.client.stop_job(&args.api, job_id).await?;
        if !print_structured(args.output, &resp)? {
            println!("{}", printable(&resp.message));
        }
        return Ok(ExitStatus::Success);
    }
    // Deleting a BatchAPI stops its running jobs: asked first, unless -y (or -f).
    if !(args.yes || args.force) {
        let running = target
            .client
            .get_api(&args.api)
            .await
            .ok()
            .and_then(|api| api.batch)
            .map_or(0, |b| b.running_jobs);
        if running > 0 {
            let question = format!(
                "{} has {running} running job{}; deleting it stops {}. delete {}?",
                args.api,
                if running == 1 { "" } else { "s" },
                if running == 1 { "it" } else { "them" },
                args.api
            );
            if !confirm(&question, "pass -y to delete it anyway")? {
                println!("not deleting {}", args.api);
                return Ok(ExitStatus::Success);
            }
        }
    }
    let resp = target
        .client
        .delete_api(&args.api, args.force, args.keep_cache)
        .await?;
    if !print_structured(args.output, &resp)? {
        println!("{}", printable(&resp.message));
    }
    Ok(ExitStatus::Success)
}
