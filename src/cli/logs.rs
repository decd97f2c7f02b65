//! `cortex logs API [JOB_ID] [-f|--no-follow] [--tail N] [-o json|yaml]`: an API's log, or a
//! job's (the server's lines about it and every worker's). On a terminal it streams, as upstream
//! cortex did; piped (scripts, CI) it prints what there is and exits, unless `-f`.
//!
//! Without following, a stream that stalls for the client's timeout fails; when following, the
//! stream may stay quiet as long as the server keeps it open (TCP keep-alive notices a vanished
//! server).
//!
//! On a terminal the log is made safe to show first ([`TerminalLog`]: colours pass, other
//! escape sequences and control characters are shown escaped); piped, its bytes pass as they
//! are, for files and `grep`.

use std::io::{IsTerminal, Write};

use super::environment;
use super::output::OutputFormat;
use super::terminal_log::TerminalLog;
use super::{ExitStatus, LogsArgs};
use crate::client::Client;

pub async fn run(args: LogsArgs) -> anyhow::Result<ExitStatus> {
    let target = environment::connect(args.env.env.as_deref()).await?;
    let terminal = std::io::stdout().is_terminal();
    let follow = args.follow || (!args.no_follow && terminal);
    let client = &target.client;
    let mut resp = match &args.job_id {
        Some(job_id) => {
            client
                .job_logs(&args.api, job_id, follow, args.tail)
                .await?
        }
        None => client.logs(&args.api, follow, args.tail).await?,
    };
    let what = format!("GET {}", resp.url().path());
    let mut lines = Lines::new(args.output, terminal);
    loop {
        let next = if follow {
            match resp.chunk().await {
                Ok(next) => next,
                Err(_) => {
                    // What came whole is shown; the cut is the server's going (killed, or
                    // its machine), or the network's, not a fault in the log.
                    write(&lines.finish())?;
                    anyhow::bail!(
                        "the connection to {} broke while following the log (the server was killed or its machine stopped, or the network dropped); run the command again once the server is back",
                        client.base_url()
                    );
                }
            }
        } else {
            client.next_chunk(&mut resp, &what).await?
        };
        let Some(chunk) = next else { break };
        if !write(&lines.take(&chunk))? {
            return Ok(ExitStatus::Success);
        }
    }
    write(&lines.finish())?;
    if follow {
        if let Some(why) = stream_ended(client, &args).await {
            eprintln!("cortex: {why}");
        }
    }
    Ok(ExitStatus::Success)
}

/// Why a followed stream ended, unless what it followed is over (a job that ended): its API
/// was deleted, or the server stopped.
async fn stream_ended(client: &Client, args: &LogsArgs) -> Option<String> {
    use reqwest::StatusCode;
    match client.get_api(&args.api).await {
        Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
            return Some(format!("{} was deleted: no more logs will come", args.api));
        }
        // The caller's token was revoked, or its access taken away: the stream ends then.
        Err(e)
            if matches!(
                e.status(),
                Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            ) =>
        {
            return Some(format!("the server ended the log stream: {e}"));
        }
        _ => {}
    }
    if let Some(job_id) = &args.job_id {
        let job = client.job_status(&args.api, job_id, false).await;
        if job.is_ok_and(|j| j.job_status.end_time.is_some()) {
            return None;
        }
    }
    Some(
        "the server ended the log stream (it stopped or restarted); run the command again to go on"
            .to_string(),
    )
}

/// Writes to stdout; false when its reader went away.
fn write(bytes: &[u8]) -> anyhow::Result<bool> {
    if bytes.is_empty() {
        return Ok(true);
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The log as it is (`pretty`; made safe on a terminal), or one `{"line": ...}` document per
/// line.
struct Lines {
    format: OutputFormat,
    partial: Vec<u8>,
    /// For a terminal (`pretty` only).
    terminal: Option<TerminalLog>,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    line: &'a str,
}

impl Lines {
    fn new(format: OutputFormat, terminal: bool) -> Lines {
        Lines {
            format,
            partial: Vec::new(),
            terminal: (terminal && format == OutputFormat::Pretty).then(TerminalLog::new),
        }
    }

    /// What to print for `chunk`: itself (made safe for a terminal), or the documents of the
    /// lines it completes.
    fn take(&mut self, chunk: &[u8]) -> Vec<u8> {
        if let Some(terminal) = &mut self.terminal {
            return terminal.take(chunk);
        }
        if self.format == OutputFormat::Pretty {
            return chunk.to_vec();
        }
        self.partial.extend_from_slice(chunk);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        let text = String::from_utf8_lossy(&done);
        text.lines()
            .map(|l| self.document(l))
            .collect::<String>()
            .into_bytes()
    }

    /// The document of an unterminated last line.
    fn finish(&mut self) -> Vec<u8> {
        if let Some(terminal) = &mut self.terminal {
            return terminal.finish();
        }
        if self.partial.is_empty() || self.format == OutputFormat::Pretty {
            return Vec::new();
        }
        let last = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
        self.document(&last).into_bytes()
    }

    fn document(&self, line: &str) -> String {
        let line = Line { line };
        match self.format {
            OutputFormat::Yaml => {
                format!("---\n{}", serde_yaml::to_string(&line).unwrap_or_default())
            }
            _ => serde_json::to_string(&line).unwrap_or_default() + "\n",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Lines, OutputFormat};

    #[test]
    fn json_lines_wait_for_the_end_of_a_line() {
        let mut l = Lines::new(OutputFormat::Json, true);
        assert_eq!(l.take(b"one\ntw"), b"{\"line\":\"one\"}\n");
        assert_eq!(l.take(b"o\n"), b"{\"line\":\"two\"}\n");
        assert_eq!(l.take(b"three"), b"");
        assert_eq!(l.finish(), b"{\"line\":\"three\"}\n");
        assert_eq!(Lines::new(OutputFormat::Pretty, false).take(b"x"), b"x");
    }

    #[test]
    fn escapes_reach_a_pipe_as_they_are_and_a_terminal_escaped() {
        let raw = b"\x1b]0;PWNED\x07\x1b[2J\n";
        assert_eq!(Lines::new(OutputFormat::Pretty, false).take(raw), raw);
        assert_eq!(
            Lines::new(OutputFormat::Pretty, true).take(raw),
            b"\\u{1b}]0;PWNED\\u{7}\\u{1b}[2J\n"
        );
    }
}
