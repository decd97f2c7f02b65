//! The durable queue of a job's batches: a worker leases a batch (a lease id and a deadline it
//! extends while it works), then acks it (`succeeded`), nacks it (queued again while
//! deliveries remain, else `failed`, a dead letter kept with its last error) or releases it
//! (back to the queue, the delivery not counted). A lease that lapses (its worker died) makes
//! the batch deliverable again. Every change is one SQLite statement or transaction, so a
//! crash never loses or doubles a batch. The jobs themselves, and the batches a job is
//! created with, are `jobs.rs`'s.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::StoreError;

/// A batch handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub seq: i64,
    pub payload: String,
    /// Proves the worker holds this delivery (a later delivery gets another).
    pub lease_id: String,
    /// Which delivery this is (1 for the first).
    pub receive_count: u32,
}

/// How the job's batches stand.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counts {
    pub queued: u64,
    pub leased: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Mean milliseconds of the batches that succeeded or failed with a measured time.
    pub avg_time_ms: Option<f64>,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.queued + self.leased + self.succeeded + self.failed
    }

    /// Batches still to be done (in the queue or with a worker).
    pub fn open(&self) -> u64 {
        self.queued + self.leased
    }
}

/// A batch that failed for good, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub seq: i64,
    pub receive_count: u32,
    pub last_error: Option<String>,
}

/// Leases the next deliverable batch of a job until `now_ms + visibility_ms`: a queued one, or
/// one whose lease lapsed. A lapsed batch that has had its `max_receive_count` deliveries
/// fails instead (its worker died each time). `None`: nothing to deliver now.
pub fn lease(
    conn: &mut Connection,
    job_id: &str,
    now_ms: i64,
    visibility_ms: i64,
) -> Result<Option<Lease>, StoreError> {
    let (_, mut leases) = settle_and_lease(conn, job_id, &[], now_ms, visibility_ms, 1)?;
    Ok(leases.pop())
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// It succeeded.
    Ack {
        seq: i64,
        lease_id: String,
        duration_ms: i64,
    },
    /// It failed: queued again while deliveries remain, else a dead letter with `error`.
    Nack {
        seq: i64,
        lease_id: String,
        error: String,
        duration_ms: i64,
    },
    /// Back to the queue, the delivery not counted: the batch was only held (never sent), or
    /// its worker died while working on it (`crashed`; after [`MAX_CRASHES`] of those it fails:
    /// a batch that kills its worker must not loop for ever).
    Release {
        seq: i64,
        lease_id: String,
        crashed: bool,
    },
}

impl Settle {
    /// The batch and the lease it settles.
    pub fn lease(&self) -> (i64, &str) {
        match self {
            Settle::Ack { seq, lease_id, .. }
            | Settle::Nack { seq, lease_id, .. }
            | Settle::Release { seq, lease_id, .. } => (*seq, lease_id),
        }
    }
}

/// Settles deliveries and leases up to `n` more batches, in one transaction (a feeder's round
/// trip to the database per `n` batches). Returns which settles held their lease, and the new
/// leases.
pub fn settle_and_lease(
    conn: &mut Connection,
    job_id: &str,
    settles: &[Settle],
    now_ms: i64,
    visibility_ms: i64,
    n: usize,
) -> Result<(Vec<bool>, Vec<Lease>), StoreError> {
    let round = Round {
        extend: &[],
        settles,
        now_ms,
        visibility_ms,
        lease: n,
    };
    let written = write_round(conn, job_id, &round)?;
    Ok((written.settled, written.leases))
}

/// A lease kept alive until `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub seq: i64,
    pub lease_id: String,
    pub until_ms: i64,
}

/// One transaction of a job's writer (`server/jobs/settler.rs`), in this order: leases kept
/// alive, deliveries settled, then up to `lease` batches leased until `now_ms +
/// visibility_ms` (lapsed leases are judged only after the extensions, so a lease its holder
/// could not extend while the database refused writes is not counted as lapsed).
pub struct Round<'a> {
    pub extend: &'a [Extension],
    pub settles: &'a [Settle],
    pub now_ms: i64,
    pub visibility_ms: i64,
    pub lease: usize,
}

/// What a [`Round`] did: which extensions and settles held their lease, and the new leases.
#[derive(Debug, Default)]
pub struct Written {
    pub extended: Vec<bool>,
    pub settled: Vec<bool>,
    pub leases: Vec<Lease>,
}

/// Writes `round` in one transaction: all of it, or (an error) nothing.
pub fn write_round(
    conn: &mut Connection,
    job_id: &str,
    round: &Round<'_>,
) -> Result<Written, StoreError> {
    let tx = conn.transaction()?;
    let mut written = Written::default();
    for e in round.extend {
        written
            .extended
            .push(extend(&tx, job_id, e.seq, &e.lease_id, e.until_ms)?);
    }
    for s in round.settles {
        written.settled.push(settle(&tx, job_id, s)?);
    }
    if round.lease > 0 {
        written.leases = lease_round(&tx, job_id, round)?;
    }
    tx.commit()?;
    Ok(written)
}

/// Applies one settle (inside the caller's transaction); false when the lease was not held.
fn settle(conn: &Connection, job_id: &str, s: &Settle) -> Result<bool, StoreError> {
    match s {
        Settle::Ack {
            seq,
            lease_id,
            duration_ms,
        } => ack(conn, job_id, *seq, lease_id, *duration_ms),
        Settle::Nack {
            seq,
            lease_id,
            error,
            duration_ms,
        } => nack(conn, job_id, *seq, lease_id, error, *duration_ms),
        Settle::Release {
            seq,
            lease_id,
            crashed,
        } => release(conn, job_id, *seq, lease_id, *crashed),
    }
}

/// Fails the lapsed batches out of deliveries, then leases up to `round.lease` (inside the
/// caller's transaction). A job that ended (stopped, timed out) hands out nothing more.
fn lease_round(
    conn: &Connection,
    job_id: &str,
    round: &Round<'_>,
) -> Result<Vec<Lease>, StoreError> {
    let max: Option<u32> = conn
        .prepare_cached("SELECT max_receive_count FROM jobs WHERE id = ?1 AND end_ns IS NULL")?
        .query_row([job_id], |r| r.get(0))
        .optional()?;
    let Some(max) = max else {
        return Ok(Vec::new());
    };
    conn.prepare_cached(
        "UPDATE batches SET state = 'failed', lease_id = NULL, lease_until_ms = NULL,
                last_error = COALESCE(last_error, 'its lease lapsed ' || receive_count
                    || ' time(s): the worker that received it did not ack, nack or extend it in time')
         WHERE job_id = ?1 AND state = 'leased' AND lease_until_ms <= ?2
           AND receive_count >= ?3",
    )?
    .execute(params![job_id, round.now_ms, max])?;
    let mut leases = Vec::new();
    while leases.len() < round.lease {
        match lease_one(conn, job_id, round.now_ms, round.visibility_ms)? {
            Some(l) => leases.push(l),
            None => break,
        }
    }
    Ok(leases)
}

/// Leases one batch (inside the caller's transaction).
fn lease_one(
    conn: &Connection,
    job_id: &str,
    now_ms: i64,
    visibility_ms: i64,
) -> Result<Option<Lease>, StoreError> {
    // Two indexed lookups (an OR of both would scan the job's batches): the first queued
    // batch, else the first whose lease lapsed.
    let row = |r: &Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
    let mut next: Option<(i64, String, u32)> = conn
        .prepare_cached(
            "SELECT seq, payload, receive_count FROM batches
             WHERE job_id = ?1 AND state = 'queued' ORDER BY seq LIMIT 1",
        )?
        .query_row(params![job_id], row)
        .optional()?;
    if next.is_none() {
        next = conn
            .prepare_cached(
                "SELECT seq, payload, receive_count FROM batches
                 WHERE job_id = ?1 AND state = 'leased' AND lease_until_ms <= ?2
                 ORDER BY lease_until_ms LIMIT 1",
            )?
            .query_row(params![job_id, now_ms], row)
            .optional()?;
    }
    let Some((seq, payload, received)) = next else {
        return Ok(None);
    };
    let lease_id = uuid::Uuid::new_v4().simple().to_string();
    conn.prepare_cached(
        "UPDATE batches SET state = 'leased', lease_id = ?3, lease_until_ms = ?4,
                receive_count = receive_count + 1
         WHERE job_id = ?1 AND seq = ?2",
    )?
    .execute(params![job_id, seq, lease_id, now_ms + visibility_ms])?;
    Ok(Some(Lease {
        seq,
        payload,
        lease_id,
        receive_count: received + 1,
    }))
}

/// Extends a lease the worker still holds; false when it lost it (it lapsed and was given to
/// another worker, or the batch is done).
pub fn extend(
    conn: &Connection,
    job_id: &str,
    seq: i64,
    lease_id: &str,
    until_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE batches SET lease_until_ms = ?4
             WHERE job_id = ?1 AND seq = ?2 AND lease_id = ?3 AND state = 'leased'",
        )?
        .execute(params![job_id, seq, lease_id, until_ms])?;
    Ok(n > 0)
}

/// The batch succeeded; false when the lease was not (or no longer) the worker's.
pub fn ack(
    conn: &Connection,
    job_id: &str,
    seq: i64,
    lease_id: &str,
    duration_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE batches SET state = 'succeeded', lease_id = NULL, lease_until_ms = NULL,
                    duration_ms = ?4
             WHERE job_id = ?1 AND seq = ?2 AND lease_id = ?3 AND state = 'leased'",
        )?
        .execute(params![job_id, seq, lease_id, duration_ms])?;
    Ok(n > 0)
}

/// The batch failed this delivery: queued again while it has deliveries left, else failed for
/// good (a dead letter) with `error`. False when the lease was not the worker's.
pub fn nack(
    conn: &Connection,
    job_id: &str,
    seq: i64,
    lease_id: &str,
    error: &str,
    duration_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE batches SET
                state = CASE WHEN receive_count >= (SELECT max_receive_count FROM jobs WHERE id = ?1)
                             THEN 'failed' ELSE 'queued' END,
                lease_id = NULL, lease_until_ms = NULL, last_error = ?4, duration_ms = ?5
             WHERE job_id = ?1 AND seq = ?2 AND lease_id = ?3 AND state = 'leased'",
        )?
        .execute(params![job_id, seq, lease_id, error, duration_ms])?;
    Ok(n > 0)
}

/// How many times a batch's worker may die while working on it before the batch fails.
pub const MAX_CRASHES: u32 = 3;

/// Gives a leased batch back to the queue without counting the delivery. `crashed`: its worker
/// died while working on it, which is counted apart; the [`MAX_CRASHES`]th time the batch fails
/// (a dead letter saying so). False when the lease was not held.
pub fn release(
    conn: &Connection,
    job_id: &str,
    seq: i64,
    lease_id: &str,
    crashed: bool,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE batches SET
                crashes = crashes + ?4,
                state = CASE WHEN crashes + ?4 >= ?5 THEN 'failed' ELSE 'queued' END,
                last_error = CASE WHEN crashes + ?4 >= ?5
                    THEN 'its worker died while working on it ' || (crashes + ?4) || ' times (killed, out of memory, or crashed; see cortex logs)'
                    ELSE last_error END,
                receive_count = CASE WHEN crashes + ?4 >= ?5 THEN receive_count
                    ELSE MAX(receive_count - 1, 0) END,
                lease_id = NULL, lease_until_ms = NULL
             WHERE job_id = ?1 AND seq = ?2 AND lease_id = ?3 AND state = 'leased'",
        )?
        .execute(params![job_id, seq, lease_id, i64::from(crashed), MAX_CRASHES])?;
    Ok(n > 0)
}

/// Gives every leased batch of a job back to the queue without counting the delivery (the
/// server restarted: the workers that held them are gone with it). Returns how many.
pub fn release_all(conn: &Connection, job_id: &str) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE batches SET state = 'queued', lease_id = NULL, lease_until_ms = NULL,
                receive_count = MAX(receive_count - 1, 0)
         WHERE job_id = ?1 AND state = 'leased'",
        [job_id],
    )?)
}

/// How the job's batches stand.
pub fn counts(conn: &Connection, job_id: &str) -> Result<Counts, StoreError> {
    let mut c = Counts::default();
    let mut stmt =
        conn.prepare("SELECT state, COUNT(*) FROM batches WHERE job_id = ?1 GROUP BY state")?;
    let rows = stmt.query_map([job_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (state, n) = row?;
        let n = n as u64;
        match state.as_str() {
            "queued" => c.queued = n,
            "leased" => c.leased = n,
            "succeeded" => c.succeeded = n,
            _ => c.failed = n,
        }
    }
    c.avg_time_ms = conn.query_row(
        "SELECT AVG(duration_ms) FROM batches
         WHERE job_id = ?1 AND state IN ('succeeded', 'failed') AND duration_ms IS NOT NULL",
        [job_id],
        |r| r.get(0),
    )?;
    Ok(c)
}

/// The batches that failed for good, in order (the first `limit` of them).
pub fn dead_letters(
    conn: &Connection,
    job_id: &str,
    limit: Option<usize>,
) -> Result<Vec<DeadLetter>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT seq, receive_count, last_error FROM batches
         WHERE job_id = ?1 AND state = 'failed' ORDER BY seq LIMIT ?2",
    )?;
    let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let rows = stmt.query_map(params![job_id, limit], |r| {
        Ok(DeadLetter {
            seq: r.get(0)?,
            receive_count: r.get(1)?,
            last_error: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::super::jobs::latest_created_ns;
    use super::super::jobs::tests::db;
    use super::*;

    #[test]
    fn batches_are_leased_in_order_and_counted_once() {
        let mut c = db(1, &["[1]", "[2]"]);
        let a = lease(&mut c, "j1", 0, 1000).unwrap().unwrap();
        let b = lease(&mut c, "j1", 0, 1000).unwrap().unwrap();
        assert_eq!((a.seq, a.payload.as_str(), a.receive_count), (0, "[1]", 1));
        assert_eq!(b.seq, 1);
        assert_eq!(lease(&mut c, "j1", 10, 1000).unwrap(), None, "both are out");
        assert!(ack(&c, "j1", 0, &a.lease_id, 5).unwrap());
        assert!(!ack(&c, "j1", 0, &a.lease_id, 5).unwrap(), "acked once");
        assert!(nack(&c, "j1", 1, &b.lease_id, "boom", 7).unwrap());
        let n = counts(&c, "j1").unwrap();
        assert_eq!((n.succeeded, n.failed, n.total()), (1, 1, 2));
        assert_eq!(n.avg_time_ms, Some(6.0));
        assert_eq!(
            dead_letters(&c, "j1", None).unwrap(),
            vec![DeadLetter {
                seq: 1,
                receive_count: 1,
                last_error: Some("boom".into())
            }]
        );
    }

    #[test]
    fn a_lapsed_lease_is_delivered_again_until_its_deliveries_run_out() {
        let mut c = db(2, &["[1]"]);
        let first = lease(&mut c, "j1", 0, 100).unwrap().unwrap();
        assert!(extend(&c, "j1", 0, &first.lease_id, 200).unwrap());
        assert_eq!(lease(&mut c, "j1", 150, 100).unwrap(), None, "extended");
        let second = lease(&mut c, "j1", 200, 100).unwrap().unwrap();
        assert_eq!(second.receive_count, 2, "redelivered after the lapse");
        assert!(
            !ack(&c, "j1", 0, &first.lease_id, 1).unwrap(),
            "the first worker lost it"
        );
        assert!(!extend(&c, "j1", 0, &first.lease_id, 900).unwrap());
        // The second worker dies too: no deliveries left, so it fails.
        assert_eq!(lease(&mut c, "j1", 300, 100).unwrap(), None);
        let dead = dead_letters(&c, "j1", None).unwrap();
        assert_eq!(dead.len(), 1);
        assert!(dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("its lease lapsed 2 time(s)"));
    }

    #[test]
    fn a_released_batch_keeps_its_deliveries() {
        let mut c = db(1, &["[1]", "[2]"]);
        let a = lease(&mut c, "j1", 0, 1000).unwrap().unwrap();
        assert!(release(&c, "j1", a.seq, &a.lease_id, false).unwrap());
        let again = lease(&mut c, "j1", 0, 1000).unwrap().unwrap();
        assert_eq!((again.seq, again.receive_count), (0, 1));
        let _b = lease(&mut c, "j1", 0, 1000).unwrap().unwrap();
        assert_eq!(release_all(&c, "j1").unwrap(), 2);
        let n = counts(&c, "j1").unwrap();
        assert_eq!((n.queued, n.open()), (2, 2));
    }

    #[test]
    fn a_batch_that_keeps_killing_its_worker_fails() {
        let mut c = db(1, &["[1]"]);
        for crash in 1..=MAX_CRASHES {
            let l = lease(&mut c, "j1", 0, 100).unwrap().unwrap();
            assert_eq!(l.receive_count, 1, "a crash does not use up a delivery");
            assert!(release(&c, "j1", l.seq, &l.lease_id, true).unwrap());
            let n = counts(&c, "j1").unwrap();
            assert_eq!(n.failed, u64::from(crash == MAX_CRASHES), "crash {crash}");
        }
        let dead = dead_letters(&c, "j1", Some(10)).unwrap();
        assert!(dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("died while working on it 3 times"));
        assert_eq!(latest_created_ns(&c).unwrap(), 100);
    }

    #[test]
    fn settles_and_leases_go_together() {
        let mut c = db(2, &["[1]", "[2]", "[3]"]);
        let (_, got) = settle_and_lease(&mut c, "j1", &[], 0, 1000, 2).unwrap();
        assert_eq!(got.iter().map(|l| l.seq).collect::<Vec<_>>(), [0, 1]);
        let settles = [
            Settle::Ack {
                seq: 0,
                lease_id: got[0].lease_id.clone(),
                duration_ms: 1,
            },
            Settle::Nack {
                seq: 1,
                lease_id: got[1].lease_id.clone(),
                error: "once".into(),
                duration_ms: 1,
            },
            Settle::Release {
                seq: 1,
                lease_id: "not-held".into(),
                crashed: false,
            },
        ];
        let (settled, more) = settle_and_lease(&mut c, "j1", &settles, 0, 1000, 5).unwrap();
        assert_eq!(settled, [true, true, false]);
        assert_eq!(
            more.iter()
                .map(|l| (l.seq, l.receive_count))
                .collect::<Vec<_>>(),
            [(1, 2), (2, 1)],
            "the nacked batch is queued again, in order"
        );
        let extend: Vec<Extension> = more
            .iter()
            .map(|l| Extension {
                seq: l.seq,
                lease_id: l.lease_id.clone(),
                until_ms: 5000,
            })
            .collect();
        let round = Round {
            extend: &extend,
            settles: &[],
            now_ms: 0,
            visibility_ms: 0,
            lease: 0,
        };
        assert_eq!(
            write_round(&mut c, "j1", &round).unwrap().extended,
            [true, true]
        );
        assert_eq!(lease(&mut c, "j1", 2000, 10).unwrap(), None, "extended");
        let n = counts(&c, "j1").unwrap();
        assert_eq!((n.succeeded, n.leased), (1, 2));
    }

    #[test]
    fn a_lease_extended_in_the_round_that_judges_lapses_has_not_lapsed() {
        // One delivery each: a lapse would fail the batch.
        let mut c = db(1, &["[1]", "[2]", "[3]"]);
        let held = lease(&mut c, "j1", 0, 100).unwrap().unwrap();
        let done = lease(&mut c, "j1", 0, 100).unwrap().unwrap();
        // Long past both deadlines (the database refused every write meanwhile), the holder's
        // first write keeps one lease, settles the other and leases the next batch.
        let extend = [Extension {
            seq: held.seq,
            lease_id: held.lease_id.clone(),
            until_ms: 10_100,
        }];
        let settles = [Settle::Ack {
            seq: done.seq,
            lease_id: done.lease_id.clone(),
            duration_ms: 1,
        }];
        let round = Round {
            extend: &extend,
            settles: &settles,
            now_ms: 10_000,
            visibility_ms: 100,
            lease: 5,
        };
        let written = write_round(&mut c, "j1", &round).unwrap();
        assert_eq!(
            (written.extended, written.settled),
            (vec![true], vec![true])
        );
        assert_eq!(
            written.leases.iter().map(|l| l.seq).collect::<Vec<_>>(),
            [2],
            "the held batch is not leased again"
        );
        let n = counts(&c, "j1").unwrap();
        assert_eq!((n.succeeded, n.leased, n.failed), (1, 2, 0));
        assert!(ack(&c, "j1", held.seq, &held.lease_id, 1).unwrap());
    }

    #[test]
    fn a_failed_delivery_is_retried_while_deliveries_remain() {
        let mut c = db(3, &["[1]"]);
        for attempt in 1..=3 {
            let l = lease(&mut c, "j1", 0, 100).unwrap().unwrap();
            assert_eq!(l.receive_count, attempt);
            assert!(nack(&c, "j1", 0, &l.lease_id, &format!("try {attempt}"), 1).unwrap());
        }
        assert_eq!(lease(&mut c, "j1", 0, 100).unwrap(), None);
        assert_eq!(
            dead_letters(&c, "j1", None).unwrap()[0]
                .last_error
                .as_deref(),
            Some("try 3")
        );
    }
}
