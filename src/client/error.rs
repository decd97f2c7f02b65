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
    /// An answer longer than the client reads ([`super::MAX_ANSWER_BYTES`]).
    #[error(
        "the answer of the cortex server at {url} to {what} is larger than {} MiB, more than any cortex answer; check that the endpoint is a cortex server (`cortex env list`)",
        limit >> 20
    )]
    TooLarge {
        url: String,
        /// `METHOD /path` of the request.
        what: String,
        limit: usize,
    },
}

/// The most of a server's text an error message quotes.
pub const MAX_QUOTED_BYTES: usize = 4096;

/// `text` as an error message may quote it: its first [`MAX_QUOTED_BYTES`] (cut at a
/// character), then how much was left out.
pub fn quoted(text: &str) -> String {
    if text.len() <= MAX_QUOTED_BYTES {
        return text.to_string();
    }
    let mut end = MAX_QUOTED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
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
            ClientError::Protocol { .. } | ClientError::TooLarge { .. } => "protocol",
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

#[cfg(test)]
mod tests {
    use super::{quoted, MAX_QUOTED_BYTES};

    #[test]
    fn a_long_text_is_quoted_up_to_the_bound_with_what_was_left_out() {
        assert_eq!(quoted("short"), "short");
        let exact = "x".repeat(MAX_QUOTED_BYTES);
        assert_eq!(quoted(&exact), exact);
        let long = "y".repeat(1 << 20);
        let q = quoted(&long);
        assert!(q.starts_with(&"y".repeat(MAX_QUOTED_BYTES)), "{}", q.len());
        assert!(q.ends_with(&format!("… ({} more bytes)", (1 << 20) - MAX_QUOTED_BYTES)));
        // Cut at a character, never inside one.
        let wide = format!("a{}", "é".repeat(MAX_QUOTED_BYTES));
        let q = quoted(&wide);
        assert!(
            q.ends_with(&format!(
                "… ({} more bytes)",
                wide.len() - MAX_QUOTED_BYTES + 1
            )),
            "{q}"
        );
    }
}
