//! Errors as documents: with `-o json|yaml`, a failed command prints `{"error": {"kind",
//! "message"}}` on stdout (the human `error: ...` line still goes to stderr), so a script
//! never parses English.

use serde::Serialize;

use super::output::OutputFormat;
use crate::api::ErrorBody;
use crate::client::ClientError;
use crate::spec::SpecError;

/// Every kind an error document may carry (README, "Errors for scripts").
pub const KINDS: &[&str] = &[
    "unreachable",
    "timed_out",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "invalid_config",
    "invalid_request",
    "server_error",
    "protocol",
    "failed",
];

/// A request the CLI refuses before asking any server.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The config file is missing or wrong.
    #[error("{0}")]
    InvalidConfig(String),
    /// The command line or the environment asks for something that cannot be done.
    #[error("{0}")]
    InvalidRequest(String),
    /// What was asked clashes with the server's state (an update in progress).
    #[error("{0}")]
    Conflict(String),
}

/// The kind of `e`: the first cause in its chain that has one, else `failed`.
pub fn kind(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return c.kind();
        }
        if cause.downcast_ref::<SpecError>().is_some() {
            return "invalid_config";
        }
        match cause.downcast_ref::<Refusal>() {
            Some(Refusal::InvalidConfig(_)) => return "invalid_config",
            Some(Refusal::InvalidRequest(_)) => return "invalid_request",
            Some(Refusal::Conflict(_)) => return "conflict",
            None => {}
        }
    }
    "failed"
}

/// `e` as `{"kind", "message"}`.
pub fn body(e: &anyhow::Error) -> ErrorBody {
    let kind = kind(e);
    debug_assert!(KINDS.contains(&kind), "{kind} is not documented");
    ErrorBody {
        kind: kind.to_string(),
        message: format!("{e:#}"),
    }
}

#[derive(Serialize)]
struct Document {
    error: ErrorBody,
}

/// `e` as the document `format` asks for (one line of JSON; a YAML document); `None` for
/// `pretty`.
pub fn document(format: OutputFormat, e: &anyhow::Error) -> Option<String> {
    let doc = Document { error: body(e) };
    match format {
        OutputFormat::Pretty => None,
        OutputFormat::Json => serde_json::to_string(&doc).ok().map(|s| s + "\n"),
        OutputFormat::Yaml => serde_yaml::to_string(&doc).ok(),
    }
}

/// The error document for a command line clap refused (an unknown flag, a missing argument),
/// when `args` ask for `-o json|yaml`: kind `invalid_request`, clap's reason as the message.
/// `None` for help and version output, and when no document was asked for.
pub fn usage_document(args: &[std::ffi::OsString], e: &clap::Error) -> Option<String> {
    if !e.use_stderr() {
        return None;
    }
    let format = requested_format(args)?;
    // clap's first paragraph, on one line: the reason without the usage and tips.
    let rendered = e.render().to_string();
    let reason = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let reason = reason.strip_prefix("error: ").unwrap_or(&reason);
    let message = format!("{reason}; `cortex help` lists the commands and their flags");
    let e = anyhow::Error::new(Refusal::InvalidRequest(message));
    document(format, &e)
}

/// The output format a raw command line asks for (`-o json`, `-ojson`, `-o=json`,
/// `--output json`, `--output=json`; the last one counts, as with clap), read without clap:
/// for a command line clap refused.
fn requested_format(args: &[std::ffi::OsString]) -> Option<OutputFormat> {
    use clap::ValueEnum;
    let mut format = None;
    let mut words = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(word) = words.next() {
        let value = match word {
            "--" => break,
            "-o" | "--output" => words.next(),
            _ => word
                .strip_prefix("--output=")
                .or_else(|| word.strip_prefix("-o").filter(|_| !word.starts_with("--")))
                .map(|v| v.strip_prefix('=').unwrap_or(v)),
        };
        if let Some(f) = value.and_then(|v| OutputFormat::from_str(v, false).ok()) {
            format = Some(f);
        }
    }
    format.filter(|f| *f != OutputFormat::Pretty)
}

#[cfg(test)]
mod tests {
    use super::{kind, requested_format, Refusal, KINDS};
    use crate::cli::OutputFormat;

    #[test]
    fn the_format_a_refused_command_line_asks_for() {
        let asks = |line: &str| {
            let args: Vec<std::ffi::OsString> = line.split(' ').map(Into::into).collect();
            requested_format(&args)
        };
        assert_eq!(asks("cortex get -o json --bogus"), Some(OutputFormat::Json));
        assert_eq!(asks("cortex get -ojson"), Some(OutputFormat::Json));
        assert_eq!(asks("cortex get -o=yaml x"), Some(OutputFormat::Yaml));
        assert_eq!(asks("cortex get --output json"), Some(OutputFormat::Json));
        assert_eq!(asks("cortex get --output=yaml"), Some(OutputFormat::Yaml));
        assert_eq!(asks("cortex get -o json -o pretty"), None);
        assert_eq!(asks("cortex get --bogus"), None);
        assert_eq!(asks("cortex get -o xml"), None);
        assert_eq!(asks("cortex predict x -- -o json"), None);
        assert_eq!(asks("cortex get --other=json"), None);
    }

    #[test]
    fn kinds_come_from_the_chain_and_are_documented() {
        let refused = anyhow::Error::new(Refusal::InvalidConfig("x".into())).context("deploying");
        assert_eq!(kind(&refused), "invalid_config");
        assert_eq!(kind(&anyhow::anyhow!("something else")), "failed");
        for k in ["invalid_config", "failed", "unreachable", "timed_out"] {
            assert!(KINDS.contains(&k), "{k}");
        }
    }
}
