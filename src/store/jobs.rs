//! BatchAPI jobs and the durable queue of their batches.
//!
//! A batch is `queued` until a worker leases it (`leased`, with a lease id and a deadline the
//! worker extends while it works), then `succeeded` (acked) or, after `max_receive_count`
//! deliveries that did not succeed, `failed` (a dead letter, kept with its last error). A
//! lease that lapses (its worker died) makes the batch deliverable again. Every change is one
//! SQLite statement or transaction, so a crash never loses or doubles a batch.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::StoreError;

/// A job as stored. Times are nanoseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: String,
    pub model_id: String,
    pub api_name: String,
    pub workers: u32,
    pub config_json: String,
    pub timeout_secs: Option<u64>,
    pub max_receive_count: u32,
    /// A `batch::status::JobStatus` string.
    pub status: String,
    pub total_batches: u64,
    /// Why it ended badly (enqueue failure, worker error, ...).
    pub failure: Option<String>,
    pub created_ns: i64,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    /// `on_job_complete` was started (it is not started twice, even across a restart).
    pub completion_started: bool,
    /// How its workers ended, once it has.
    pub workers_succeeded: u32,
    pub workers_failed: u32,
}

/// A new job, before its batches.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob<'a> {
    pub id: &'a str,
    pub model_id: &'a str,
    pub api_name: &'a str,
    pub workers: u32,
    pub config_json: &'a str,
    pub timeout_secs: Option<u64>,
    pub max_receive_count: u32,
    pub created_ns: i64,
}

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

const JOB_COLUMNS: &str = "id, model_id, api_name, workers, config_json, timeout_secs, \
                           max_receive_count, status, total_batches, failure, created_ns, \
                           start_ns, end_ns, completion_started, workers_succeeded, workers_failed";

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        model_id: r.get(1)?,
        api_name: r.get(2)?,
        workers: r.get(3)?,
        config_json: r.get(4)?,
        timeout_secs: r.get::<_, Option<i64>>(5)?.map(|t| t.max(0) as u64),
        max_receive_count: r.get(6)?,
        status: r.get(7)?,
        total_batches: r.get::<_, i64>(8)?.max(0) as u64,
        failure: r.get(9)?,
        created_ns: r.get(10)?,
        start_ns: r.get(11)?,
        end_ns: r.get(12)?,
        completion_started: r.get(13)?,
        workers_succeeded: r.get(14)?,
        workers_failed: r.get(15)?,
    })
}

/// Stores a job with all its batches in one transaction (all or nothing), `status_running`.
pub fn create(
    conn: &mut Connection,
    job: &NewJob<'_>,
    batches: &[String],
) -> Result<JobRow, StoreError> {
    let tx = conn.transaction()?;
    insert_job(
        &tx,
        job,
        "status_running",
        batches.len(),
        Some(job.created_ns),
    )?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO batches (job_id, seq, payload, state) VALUES (?1, ?2, ?3, 'queued')",
        )?;
        for (seq, payload) in batches.iter().enumerate() {
            insert.execute(params![job.id, seq as i64, payload])?;
        }
    }
    let row = tx.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
        [job.id],
        job_from_row,
    )?;
    tx.commit()?;
    Ok(row)
}

/// Stores a job whose batches are still being read (`status_enqueuing`, no batches yet).
pub fn create_enqueuing(conn: &Connection, job: &NewJob<'_>) -> Result<JobRow, StoreError> {
    insert_job(conn, job, "status_enqueuing", 0, None)?;
    get(conn, job.id)?.ok_or_else(|| StoreError::NotFound(format!("job {} vanished", job.id)))
}

/// The job's row, with its status, batch count and start.
fn insert_job(
    conn: &Connection,
    job: &NewJob<'_>,
    status: &str,
    total_batches: usize,
    start_ns: Option<i64>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO jobs (id, model_id, api_name, workers, config_json, timeout_secs,
                           max_receive_count, status, total_batches, created_ns, start_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            job.id,
            job.model_id,
            job.api_name,
            job.workers,
            job.config_json,
            job.timeout_secs
                .map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            job.max_receive_count,
            status,
            total_batches as i64,
            job.created_ns,
            start_ns
        ],
    )?;
    Ok(())
}

/// Appends batches to a job that is enqueuing (one transaction); returns its batch count.
pub fn append_batches(
    conn: &mut Connection,
    job_id: &str,
    batches: &[String],
) -> Result<u64, StoreError> {
    let tx = conn.transaction()?;
    let total: i64 = tx.query_row(
        "SELECT total_batches FROM jobs WHERE id = ?1 AND status = 'status_enqueuing'",
        [job_id],
        |r| r.get(0),
    )?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO batches (job_id, seq, payload, state) VALUES (?1, ?2, ?3, 'queued')",
        )?;
        for (i, payload) in batches.iter().enumerate() {
            insert.execute(params![job_id, total + i as i64, payload])?;
        }
    }
    let total = total + batches.len() as i64;
    tx.execute(
        "UPDATE jobs SET total_batches = ?2 WHERE id = ?1",
        params![job_id, total],
    )?;
    tx.commit()?;
    Ok(total as u64)
}

/// Every batch is in: the job runs from `start_ns`. False when it is not enqueuing any more
/// (it was stopped meanwhile).
pub fn start_running(conn: &Connection, job_id: &str, start_ns: i64) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE jobs SET status = 'status_running', start_ns = ?2
         WHERE id = ?1 AND status = 'status_enqueuing' AND end_ns IS NULL",
        params![job_id, start_ns],
    )?;
    Ok(n > 0)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<JobRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            [id],
            job_from_row,
        )
        .optional()?)
}

/// The jobs of a model, newest first (job ids sort that way).
pub fn list(conn: &Connection, model_id: &str) -> Result<Vec<JobRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE model_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([model_id], job_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The latest creation time of any job (job ids are made from creation times).
pub fn latest_created_ns(conn: &Connection) -> Result<i64, StoreError> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(created_ns), 0) FROM jobs", [], |r| {
            r.get(0)
        })?,
    )
}

/// Every job that has not ended, oldest first (to run again after a restart).
pub fn unfinished(conn: &Connection) -> Result<Vec<JobRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE end_ns IS NULL ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map([], job_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending<'a> {
    /// A terminal `JobStatus` string.
    pub status: &'a str,
    pub end_ns: i64,
    pub failure: Option<&'a str>,
    pub workers_succeeded: u32,
    pub workers_failed: u32,
}

/// Ends a job that has not ended. False when it had already ended (the first ending stands).
pub fn finish(conn: &Connection, id: &str, ending: &Ending<'_>) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE jobs SET status = ?2, end_ns = ?3, failure = ?4, workers_succeeded = ?5,
                         workers_failed = ?6
         WHERE id = ?1 AND end_ns IS NULL",
        params![
            id,
            ending.status,
            ending.end_ns,
            ending.failure,
            ending.workers_succeeded,
            ending.workers_failed
        ],
    )?;
    Ok(n > 0)
}

/// Marks that `on_job_complete` starts; false when it already started once (or the job ended).
pub fn start_completion(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE jobs SET completion_started = 1
         WHERE id = ?1 AND completion_started = 0 AND end_ns IS NULL",
        [id],
    )?;
    Ok(n > 0)
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
    let tx = conn.transaction()?;
    let mut settled = Vec::with_capacity(settles.len());
    for s in settles {
        settled.push(match s {
            Settle::Ack {
                seq,
                lease_id,
                duration_ms,
            } => ack(&tx, job_id, *seq, lease_id, *duration_ms)?,
            Settle::Nack {
                seq,
                lease_id,
                error,
                duration_ms,
            } => nack(&tx, job_id, *seq, lease_id, error, *duration_ms)?,
            Settle::Release {
                seq,
                lease_id,
                crashed,
            } => release(&tx, job_id, *seq, lease_id, *crashed)?,
        });
    }
    let mut leases = Vec::new();
    if n > 0 {
        let max: Option<u32> = tx
            // A job that ended (stopped, timed out) hands out nothing more.
            .prepare_cached("SELECT max_receive_count FROM jobs WHERE id = ?1 AND end_ns IS NULL")?
            .query_row([job_id], |r| r.get(0))
            .optional()?;
        if let Some(max) = max {
            tx.prepare_cached(
                "UPDATE batches SET state = 'failed', lease_id = NULL, lease_until_ms = NULL,
                        last_error = COALESCE(last_error, 'its lease lapsed ' || receive_count
                            || ' time(s): the worker that received it did not ack, nack or extend it in time')
                 WHERE job_id = ?1 AND state = 'leased' AND lease_until_ms <= ?2
                   AND receive_count >= ?3",
            )?
            .execute(params![job_id, now_ms, max])?;
            while leases.len() < n {
                match lease_one(&tx, job_id, now_ms, visibility_ms)? {
                    Some(l) => leases.push(l),
                    None => break,
                }
            }
        }
    }
    tx.commit()?;
    Ok((settled, leases))
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

/// Extends every lease in `held` (one transaction).
pub fn extend_all(
    conn: &mut Connection,
    job_id: &str,
    held: &[(i64, String)],
    until_ms: i64,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for (seq, lease_id) in held {
        extend(&tx, job_id, *seq, lease_id, until_ms)?;
    }
    tx.commit()?;
    Ok(())
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
    use super::*;

    fn db(max_receive_count: u32, batches: &[&str]) -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut c).unwrap();
        c.execute_batch(
            "INSERT INTO users (id, username, admin, created_at) VALUES ('u', 'u', 1, 0);
             INSERT INTO bundles (sha256, size, created_at) VALUES ('b', 1, 0);
             INSERT INTO models (id, name, kind, owner_id, spec_json, spec_hash, bundle_sha256,
                                 config_file, created_at, updated_at)
             VALUES ('m', 'sum', 'BatchAPI', 'u', '{}', 'h', 'b', 'c', 0, 0);",
        )
        .unwrap();
        let batches: Vec<String> = batches.iter().map(|b| b.to_string()).collect();
        create(
            &mut c,
            &NewJob {
                id: "j1",
                model_id: "m",
                api_name: "sum",
                workers: 1,
                config_json: "{}",
                timeout_secs: None,
                max_receive_count,
                created_ns: 100,
            },
            &batches,
        )
        .unwrap();
        c
    }

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
        let held: Vec<(i64, String)> = more.iter().map(|l| (l.seq, l.lease_id.clone())).collect();
        extend_all(&mut c, "j1", &held, 5000).unwrap();
        assert_eq!(lease(&mut c, "j1", 2000, 10).unwrap(), None, "extended");
        let n = counts(&c, "j1").unwrap();
        assert_eq!((n.succeeded, n.leased), (1, 2));
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

    #[test]
    fn an_enqueuing_job_takes_batches_until_it_runs() {
        let mut c = db(1, &[]);
        create_enqueuing(
            &c,
            &NewJob {
                id: "j2",
                model_id: "m",
                api_name: "sum",
                workers: 1,
                config_json: "{}",
                timeout_secs: None,
                max_receive_count: 1,
                created_ns: 5,
            },
        )
        .unwrap();
        assert_eq!(
            append_batches(&mut c, "j2", &["[1]".into(), "[2]".into()]).unwrap(),
            2
        );
        assert_eq!(append_batches(&mut c, "j2", &["[3]".into()]).unwrap(), 3);
        assert!(start_running(&c, "j2", 9).unwrap());
        assert!(!start_running(&c, "j2", 9).unwrap(), "once");
        assert!(
            append_batches(&mut c, "j2", &["[4]".into()]).is_err(),
            "closed"
        );
        let job = get(&c, "j2").unwrap().unwrap();
        assert_eq!(
            (job.status.as_str(), job.total_batches, job.start_ns),
            ("status_running", 3, Some(9))
        );
        let l = lease(&mut c, "j2", 0, 10).unwrap().unwrap();
        assert_eq!((l.seq, l.payload.as_str()), (0, "[1]"));
    }

    #[test]
    fn a_job_ends_once() {
        let mut c = db(1, &["[1]"]);
        let ending = |status, end_ns| Ending {
            status,
            end_ns,
            failure: None,
            workers_succeeded: 0,
            workers_failed: 0,
        };
        assert_eq!(unfinished(&c).unwrap().len(), 1);
        assert!(start_completion(&c, "j1").unwrap());
        assert!(!start_completion(&c, "j1").unwrap(), "once");
        assert!(finish(&c, "j1", &ending("status_stopped", 200)).unwrap());
        assert!(!finish(&c, "j1", &ending("status_succeeded", 300)).unwrap());
        let job = get(&c, "j1").unwrap().unwrap();
        assert_eq!(
            (job.status.as_str(), job.end_ns),
            ("status_stopped", Some(200))
        );
        assert!(unfinished(&c).unwrap().is_empty());
        assert_eq!(
            lease(&mut c, "j1", 0, 10).unwrap(),
            None,
            "an ended job hands out nothing"
        );
        assert_eq!(list(&c, "m").unwrap().len(), 1);
    }
}
