use std::process::ExitCode;

use clap::Parser;
use cortex::cli::{self, ExitStatus};

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    if !matches!(args.command, cli::Command::Server(_)) {
        // Like other command-line tools, end quietly when the reader of our output goes away
        // (`cortex get | head -1`). Sockets are unaffected (Rust sends with MSG_NOSIGNAL); the
        // server keeps ignoring SIGPIPE.
        // SAFETY: setting a signal's disposition to the default has no memory effects.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli::run(args) {
        Ok(ExitStatus::Success) => ExitCode::SUCCESS,
        Ok(ExitStatus::Failure) => ExitCode::from(1),
        Err(e) => {
            // A closed stdout (e.g. `cortex logs x | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
