//! `cortex version`: the CLI's version and, when reachable, the server's.

use super::environment;
use super::{ExitStatus, VersionArgs};

pub async fn run(args: VersionArgs) -> anyhow::Result<ExitStatus> {
    println!("cli version: {}", crate::VERSION);
    let server = match environment::connect_if_running(args.env.env.as_deref()).await {
        Ok(Some(target)) => match target.client.health().await {
            Ok(h) => h.version,
            Err(e) => format!("unknown ({e})"),
        },
        Ok(None) => "not running (it starts on the first command that needs it)".to_string(),
        Err(e) => format!("unknown ({e})"),
    };
    println!("server version: {}", super::style::printable(&server));
    Ok(ExitStatus::Success)
}
