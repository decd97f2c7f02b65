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

#[cfg(test)]
mod tests {
    use super::{kind, Refusal, KINDS};

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
