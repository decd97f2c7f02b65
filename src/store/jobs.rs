//! BatchAPI jobs: created (with their batches, or `enqueuing` while their files are read),
//! started, listed and ended, each change one SQLite statement or transaction; `batches.rs`
//! is the queue their batches go through.

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

#[cfg(test)]
pub(crate) mod tests {
    use super::super::batches::lease;
    use super::*;

    /// A database with one job `j1` of API `sum` holding `batches`.
    pub(crate) fn db(max_receive_count: u32, batches: &[&str]) -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut c).unwrap();
        seed(&mut c, max_receive_count, batches);
        c
    }

    /// Job `j1` of API `sum` with `batches`, in a migrated database.
    pub(crate) fn seed(c: &mut Connection, max_receive_count: u32, batches: &[&str]) {
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
            c,
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
