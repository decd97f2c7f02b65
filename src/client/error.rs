//! What can go wrong talking to a cortex server, and the kind each failure is (for `-o json`
//! error documents).

use std::time::Duration;

use reqwest::StatusCode;

use super::Waiting;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{message}")]
    Api {
        status: StatusCode,
        kind: String,
        message: String,
    },
    #[error("cannot reach the cortex server at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// A wait ran past the client's timeout (`CORTEX_CLIENT_TIMEOUT`).
    #[error("{}", timed_out_message(url, what, *waiting, *after))]
    TimedOut {
        /// The server's base URL.
        url: String,
        /// `METHOD /path` of the request.
        what: String,
        waiting: Waiting,
        after: Duration,
    },
    #[error("unexpected answer from the cortex server at {url}: {detail}")]
    Protocol { url: String, detail: String },
}

fn timed_out_message(url: &str, what: &str, waiting: Waiting, after: Duration) -> String {
    let after = humantime::format_duration(after);
    let more = format!("allow more time with {}=<seconds>", super::timeout::VAR);
    match waiting {
        Waiting::Connecting => format!(
            "timed out after {after} connecting to the cortex server at {url}; check that it runs and that the endpoint is right (`cortex env list`), or {more}"
        ),
        Waiting::Answer => format!(
            "the cortex server at {url} did not answer {what} within {after}; it may be overloaded or stuck: try again, or {more}"
        ),
        Waiting::Upload => format!(
            "the upload to the cortex server at {url} ({what}) stalled: no progress for {after}; check the network, or {more}"
        ),
    }
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// What went wrong, in one word of the CLI's documented set (`-o json` error documents):
    /// `unreachable`, `timed_out`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `invalid_config`, `invalid_request`, `server_error` or `protocol`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Unreachable { .. } => "unreachable",
            ClientError::TimedOut { .. } => "timed_out",
            ClientError::Protocol { .. } => "protocol",
            ClientError::Api { status, kind, .. } => match status.as_u16() {
                401 => "unauthorized",
                403 => "forbidden",
                404 => "not_found",
                409 => "conflict",
                _ if kind == "invalid_config" => "invalid_config",
                400..=499 => "invalid_request",
                _ => "server_error",
            },
        }
    }
}
