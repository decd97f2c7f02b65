//! A group of batches delivered as one streamed `POST /batches` (the python shim's batch mode,
//! `cortex_runtime/batch.py`): the request body carries a batch per line, written as the
//! window allows, and the answer an outcome per line, settled as each comes.
//!
//! At least once, with a window of [`WINDOW`]: the line of batch k+2 is written only once the
//! outcome of batch k is committed (see `feeder.rs`).

use std::net::SocketAddr;
use std::time::Instant;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::outcome::{failure_text, nack, settle, stream_outcome, Lines};
use super::settler::{Settler, Ticket};
use crate::engine::Replica;
use crate::store::batches;

/// Batches of a stream sent to the worker whose outcome is not committed: the line of batch
/// k+WINDOW is written once the outcome of batch k is committed.
pub const WINDOW: usize = 2;

/// What a delivery needs of its feeder.
pub(super) struct Delivery<'a> {
    pub http: &'a reqwest::Client,
    pub job_id: &'a str,
    pub worker: &'a dyn Replica,
    pub settler: &'a Settler,
}

/// The id a batch is known by to its worker.
pub(super) fn batch_id(job_id: &str, lease: &batches::Lease) -> String {
    format!("{job_id}-{}", lease.seq)
}

/// Sends `group` to the worker at `addr` and settles each batch as its outcome comes,
/// counting them in `settled`. `Err`: the connection failed before every batch had its
/// outcome.
pub(super) async fn stream(
    d: &Delivery<'_>,
    addr: SocketAddr,
    group: &[batches::Lease],
    settled: &mut usize,
) -> Result<(), String> {
    let started = Instant::now();
    let (lines, mut body) = mpsc::unbounded_channel::<Result<Vec<u8>, std::io::Error>>();
    let mut window = Window {
        group,
        job_id: d.job_id,
        lines: Some(lines),
        sent: 0,
    };
    let mut committed = d.settler.committed();
    // The ticket of each settled batch's outcome.
    let tickets: Vec<Ticket> = Vec::with_capacity(group.len());
    window.send_allowed(&tickets, *committed.borrow_and_update());
    let body = futures_util::stream::poll_fn(move |cx| body.poll_recv(cx));
    let resp = d
        .http
        .post(format!("http://{addr}/batches"))
        .header("x-cortex-job-id", d.job_id)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    if !status.is_success() {
        // The worker refused the whole group: each batch failed this delivery.
        let body = resp.text().await.map_err(|e| e.to_string())?;
        let why = failure_text(status.as_u16(), &body);
        let took = started.elapsed().as_millis() as i64;
        for l in group {
            d.settler.settle(nack(l, why.clone(), took));
            *settled += 1;
        }
        d.worker.did_work();
        return Ok(());
    }
    let mut outcomes = Outcomes {
        d,
        group,
        tickets,
        settled,
    };
    outcomes.read(resp, &mut window, &mut committed).await
}

/// The request body's writer: a batch's line goes once the window allows it.
struct Window<'a> {
    group: &'a [batches::Lease],
    job_id: &'a str,
    /// The body's sender, until the last line is written.
    lines: Option<mpsc::UnboundedSender<Result<Vec<u8>, std::io::Error>>>,
    sent: usize,
}

impl Window<'_> {
    /// Writes every line the window allows (in one chunk), and ends the body after the last.
    fn send_allowed(&mut self, tickets: &[Ticket], committed: u64) {
        let mut chunk = Vec::new();
        while self.sent < self.group.len() && may_send(self.sent, tickets, committed) {
            let l = &self.group[self.sent];
            batch_line(&batch_id(self.job_id, l), &l.payload, &mut chunk);
            self.sent += 1;
        }
        if let (Some(tx), false) = (&self.lines, chunk.is_empty()) {
            let _ = tx.send(Ok(chunk));
        }
        if self.sent == self.group.len() {
            self.lines = None;
        }
    }

    fn waiting(&self) -> bool {
        self.sent < self.group.len()
    }
}

/// The answer's reader: a batch's outcome per line, in order, each as its batch ends.
struct Outcomes<'a, 'd> {
    d: &'a Delivery<'d>,
    group: &'a [batches::Lease],
    tickets: Vec<Ticket>,
    settled: &'a mut usize,
}

impl Outcomes<'_, '_> {
    async fn read(
        &mut self,
        resp: reqwest::Response,
        window: &mut Window<'_>,
        committed: &mut watch::Receiver<u64>,
    ) -> Result<(), String> {
        let mut answer = resp.bytes_stream();
        let mut lines = Lines::default();
        while *self.settled < self.group.len() {
            // Every line the commits so far allow goes first; what is still held back waits
            // for a commit after this look (one between a look and the wait would otherwise
            // be missed, and the worker, out of lines, would wait for ever).
            window.send_allowed(&self.tickets, *committed.borrow_and_update());
            let waiting = window.waiting();
            tokio::select! {
                chunk = answer.next() => {
                    let Some(chunk) = chunk.transpose().map_err(|e| e.to_string())? else {
                        self.ended_early();
                        return Ok(());
                    };
                    for line in lines.push(&chunk) {
                        self.take(&line);
                    }
                }
                changed = committed.changed(), if waiting => {
                    if changed.is_err() {
                        return Err("the job's writer ended".to_string());
                    }
                }
            }
        }
        Ok(())
    }

    /// The next batch's outcome line.
    fn take(&mut self, line: &str) {
        let Some(lease) = self.group.get(*self.settled) else {
            return;
        };
        let outcome = stream_outcome(line, &batch_id(self.d.job_id, lease));
        self.tickets
            .push(self.d.settler.settle(settle(lease, outcome)));
        self.d.worker.did_work();
        *self.settled += 1;
    }

    /// The worker ended its answer early (it is stopping): the batches without an outcome
    /// never started, and go back to the queue as they are.
    fn ended_early(&mut self) {
        for l in &self.group[*self.settled..] {
            self.d.settler.settle(batches::Settle::Release {
                seq: l.seq,
                lease_id: l.lease_id.clone(),
                crashed: false,
            });
        }
        *self.settled = self.group.len();
    }
}

/// Whether the line of batch `k` of a stream may be written, given the tickets of the
/// outcomes settled so far (batch i's at `tickets[i]`) and how many settles are committed:
/// the first [`WINDOW`] at once, then batch k once the outcome of batch k-WINDOW is
/// committed. With a worker that runs its batches in order, one at a time, that leaves at
/// most WINDOW batches run or running whose outcomes are not committed.
fn may_send(k: usize, tickets: &[Ticket], committed: u64) -> bool {
    k < WINDOW
        || tickets
            .get(k - WINDOW)
            .is_some_and(|ticket| *ticket <= committed)
}

/// Appends a batch's line of a `POST /batches` body to `out`. The payload is JSON
/// already: spliced in, not parsed again (a raw line break in JSON can only be
/// whitespace, so it becomes a space).
fn batch_line(batch_id: &str, payload: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"batch_id\":\"");
    out.extend_from_slice(batch_id.as_bytes());
    out.extend_from_slice(b"\",\"payload\":");
    let start = out.len();
    out.extend_from_slice(payload.as_bytes());
    for b in &mut out[start..] {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stream_sends_a_batch_once_the_outcome_two_before_it_is_committed() {
        use super::may_send;
        // Nothing settled: the first two go, the third waits.
        assert!(may_send(0, &[], 0) && may_send(1, &[], 0));
        assert!(!may_send(2, &[], 0));
        // Batch 0 ended (its outcome is settle 1) but is not committed: batch 2 waits...
        assert!(!may_send(2, &[1], 0));
        // ... until it is; batch 3 waits for batch 1's.
        assert!(may_send(2, &[1], 1));
        assert!(!may_send(3, &[1], 1));
        assert!(!may_send(3, &[1, 2], 1));
        assert!(may_send(3, &[1, 2], 2));
        // Tickets count every settle of the feeder (releases of other groups too).
        assert!(!may_send(3, &[7, 9], 8));
        assert!(may_send(3, &[7, 9], 9));
    }

    #[test]
    fn a_batch_line_is_one_line_whatever_its_payload() {
        let mut out = Vec::new();
        super::batch_line("j-0", "[1,\n 2]", &mut out);
        super::batch_line("j-1", "[\"a\\nb\"]\r\n", &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                serde_json::json!({"batch_id": "j-0", "payload": [1, 2]}),
                serde_json::json!({"batch_id": "j-1", "payload": ["a\nb"]}),
            ]
        );
    }
}
