//! `cortex delete API [JOB_ID]`.

use anyhow::bail;

use super::environment;
use super::output::print_structured;
use super::{DeleteArgs, ExitStatus};

pub async fn run(args: DeleteArgs) -> anyhow::Result<ExitStatus> {
    if args.job_id.is_some() {
        bail!("batch jobs are not supported by this version of cortex yet; `cortex delete <api>` deletes a RealtimeAPI");
    }
    let target = environment::connect(args.env.env.as_deref()).await?;
    // One replica per API for now, so there is nothing to confirm (cortex asks above two
    // live replicas); -f and -y are accepted for scripts written against cortex.
    let _ = (args.force, args.yes);
    let resp = target.client.delete_api(&args.api).await?;
    if !print_structured(args.output, &resp)? {
        println!("{}", resp.message);
    }
    Ok(ExitStatus::Success)
}
