//! What a worker's answer says about its batches: the outcome lines a python worker streams
//! for a group (`POST /batches`), the text a failed batch is remembered with, and the settle
//! each outcome makes. Pure.

use crate::store::batches::{Lease, Settle};

/// The longest error text kept for a failed batch.
const MAX_ERROR_CHARS: usize = 2000;

/// Splits a streamed answer into its lines, whatever its chunks.
#[derive(Default)]
pub(super) struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// The lines `chunk` completes.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if !line.is_empty() {
                lines.push(line);
            }
        }
        lines
    }
}

/// One batch's outcome from its line of a `POST /batches` answer
/// (`{"batch_id", "ok", "error", "ms"}`); a line that does not fit, or names another batch,
/// fails the batch, saying so.
pub(super) fn stream_outcome(line: &str, batch_id: &str) -> Result<i64, String> {
    #[derive(serde::Deserialize)]
    struct Outcome {
        #[serde(default)]
        batch_id: Option<String>,
        ok: bool,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        ms: Option<f64>,
    }
    match serde_json::from_str::<Outcome>(line) {
        Ok(o) if o.batch_id.as_deref().is_none_or(|id| id == batch_id) => {
            if o.ok {
                Ok(o.ms.unwrap_or(0.0).round() as i64)
            } else {
                Err(o
                    .error
                    .unwrap_or_else(|| "the worker said it failed".to_string()))
            }
        }
        _ => Err(format!(
            "the worker's outcome for batch {batch_id} was not one: {}",
            line.chars().take(200).collect::<String>()
        )),
    }
}

/// What a failed batch is remembered with: the worker's status and the start of its answer.
pub(super) fn failure_text(status: u16, body: &str) -> String {
    // A JSON error (the python shim's) says it best in its message.
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        });
    let body = message.as_deref().unwrap_or(body).trim();
    let mut text = format!("the worker answered {status}");
    if !body.is_empty() {
        text.push_str(": ");
        text.extend(body.chars().take(MAX_ERROR_CHARS));
    }
    text
}

/// A batch's settle from its outcome (its milliseconds, or why it failed).
pub(super) fn settle(lease: &Lease, outcome: Result<i64, String>) -> Settle {
    match outcome {
        Ok(ms) => Settle::Ack {
            seq: lease.seq,
            lease_id: lease.lease_id.clone(),
            duration_ms: ms,
        },
        Err(error) => nack(lease, error, 0),
    }
}

pub(super) fn nack(lease: &Lease, error: String, duration_ms: i64) -> Settle {
    Settle::Nack {
        seq: lease.seq,
        lease_id: lease.lease_id.clone(),
        error,
        duration_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_answer_is_one_outcome_per_line_whatever_its_chunks() {
        use super::{stream_outcome, Lines};
        let mut lines = Lines::default();
        assert!(lines.push(br#"{"batch_id": "j-0", "ok": tr"#).is_empty());
        let got = lines.push(b"ue, \"ms\": 1.6}\n{\"ok\": false, \"error\": \"boom\"}\n{");
        assert_eq!(got.len(), 2);
        assert_eq!(stream_outcome(&got[0], "j-0"), Ok(2));
        assert_eq!(stream_outcome(&got[1], "j-1"), Err("boom".to_string()));
        assert!(stream_outcome(&got[0], "j-1")
            .unwrap_err()
            .contains("was not one"));
        assert!(stream_outcome("[]", "j-1")
            .unwrap_err()
            .contains("was not one"));
    }

    #[test]
    fn a_failure_keeps_the_start_of_the_answer() {
        assert_eq!(
            failure_text(500, " boom \n"),
            "the worker answered 500: boom"
        );
        assert_eq!(failure_text(502, ""), "the worker answered 502");
        assert_eq!(
            failure_text(
                500,
                r#"{"kind": "internal", "message": "predict raised E: x"}"#
            ),
            "the worker answered 500: predict raised E: x"
        );
        assert_eq!(failure_text(500, &"x".repeat(5000)).len(), 2000 + 25);
    }
}
