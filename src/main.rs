use std::process::ExitCode;

use clap::Parser;
use cortex::cli::{self, ExitStatus};

fn main() -> ExitCode {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args = match cli::Cli::try_parse_from(&raw) {
        Ok(args) => args,
        Err(e) => {
            // A script asking for `-o json` reads a refused command line as a document too.
            if let Some(doc) = cli::usage_document(&raw, &e) {
                print!("{doc}");
            }
            e.exit()
        }
    };
    // Only the server itself keeps ignoring SIGPIPE (`cortex server status` prints like any
    // other command).
    let runs_the_server = matches!(&args.command, cli::Command::Server(s) if s.command.is_none());
    if !runs_the_server {
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
            // The message may quote the server: nothing in it may drive the terminal.
            eprintln!("error: {}", cli::style::printable(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}
