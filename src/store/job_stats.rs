//! What `GET /metrics` reads of jobs and batches: every job's API and status (the jobs table is
//! small), and one job's batches counted by state with a histogram of the time the batches
//! that succeeded took. A tally reads only its job's batches (through `batches_next`); the
//! caller keeps the tallies of jobs that ended a while ago, whose batches no longer change.

use rusqlite::Connection;

use super::StoreError;

/// The upper bounds of the batch duration histogram's buckets, in milliseconds (10 ms to
/// 10 min; a last bucket takes the rest).
pub const DURATION_BOUNDS_MS: [i64; 12] = [
    10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 600_000,
];

/// A stored job, as the metrics see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEntry {
    pub id: String,
    pub api: String,
    /// A `batch::status::JobStatus` string (`status_running`, ...).
    pub status: String,
    /// When it ended (nanoseconds since the Unix epoch).
    pub end_ns: Option<i64>,
}

/// Every stored job.
pub fn jobs(conn: &Connection) -> Result<Vec<JobEntry>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT id, api_name, status, end_ns FROM jobs ORDER BY created_ns")?;
    let rows = stmt.query_map([], |r| {
        Ok(JobEntry {
            id: r.get(0)?,
            api: r.get(1)?,
            status: r.get(2)?,
            end_ns: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One job's batches by state, and how long those that succeeded took.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tally {
    pub queued: u64,
    pub leased: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Succeeded batches with a measured time, per bucket of `DURATION_BOUNDS_MS` (not
    /// cumulative; the last is beyond every bound).
    pub buckets: [u64; DURATION_BOUNDS_MS.len() + 1],
    /// The milliseconds of those batches together.
    pub duration_ms_sum: u64,
}

impl Tally {
    /// Adds `other`'s numbers to these.
    pub fn add(&mut self, other: &Tally) {
        self.queued += other.queued;
        self.leased += other.leased;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.duration_ms_sum += other.duration_ms_sum;
    }
}

/// `CASE WHEN duration_ms <= 10 THEN 0 ... ELSE n END`: the bucket of a batch's time.
fn bucket_expr() -> String {
    let arms: String = DURATION_BOUNDS_MS
        .iter()
        .enumerate()
        .map(|(i, ms)| format!(" WHEN duration_ms <= {ms} THEN {i}"))
        .collect();
    format!("CASE{arms} ELSE {} END", DURATION_BOUNDS_MS.len())
}

/// Counts `job_id`'s batches.
pub fn tally(conn: &Connection, job_id: &str) -> Result<Tally, StoreError> {
    let mut t = Tally::default();
    let mut stmt = conn
        .prepare_cached("SELECT state, COUNT(*) FROM batches WHERE job_id = ?1 GROUP BY state")?;
    let rows = stmt.query_map([job_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (state, n) = row?;
        let n = n.max(0) as u64;
        match state.as_str() {
            "queued" => t.queued = n,
            "leased" => t.leased = n,
            "succeeded" => t.succeeded = n,
            _ => t.failed = n,
        }
    }
    let sql = format!(
        "SELECT {} AS bucket, COUNT(*), SUM(MAX(duration_ms, 0)) FROM batches
         WHERE job_id = ?1 AND state = 'succeeded' AND duration_ms IS NOT NULL GROUP BY bucket",
        bucket_expr()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([job_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (bucket, n, ms) = row?;
        if let Some(slot) = usize::try_from(bucket)
            .ok()
            .and_then(|b| t.buckets.get_mut(b))
        {
            *slot = n.max(0) as u64;
        }
        t.duration_ms_sum += ms.max(0) as u64;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::jobs::{self, NewJob};

    fn db() -> Connection {
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
        let batches: Vec<String> = (0..5).map(|i| format!("[{i}]")).collect();
        let job = NewJob {
            id: "j1",
            model_id: "m",
            api_name: "sum",
            workers: 1,
            config_json: "{}",
            timeout_secs: None,
            max_receive_count: 1,
            created_ns: 100,
        };
        jobs::create(&mut c, &job, &batches).unwrap();
        c
    }

    #[test]
    fn a_tally_counts_batches_by_state_and_buckets_the_times_of_those_that_succeeded() {
        let c = db();
        // Three succeed (5 ms, 70 ms, 20 min), one fails after 30 ms, one stays queued.
        for (seq, state, ms) in [
            (0, "succeeded", 5),
            (1, "succeeded", 70),
            (2, "succeeded", 1_200_000),
            (3, "failed", 30),
        ] {
            c.execute(
                "UPDATE batches SET state = ?1, duration_ms = ?2 WHERE job_id = 'j1' AND seq = ?3",
                rusqlite::params![state, ms, seq],
            )
            .unwrap();
        }
        let t = tally(&c, "j1").unwrap();
        assert_eq!((t.queued, t.leased, t.succeeded, t.failed), (1, 0, 3, 1));
        assert_eq!(t.buckets[0], 1, "5 ms is within 10 ms");
        assert_eq!(t.buckets[2], 1, "70 ms is within 100 ms");
        assert_eq!(
            t.buckets[DURATION_BOUNDS_MS.len()],
            1,
            "20 min is beyond 10 min"
        );
        assert_eq!(
            t.buckets.iter().sum::<u64>(),
            3,
            "failed batches are not timed"
        );
        assert_eq!(t.duration_ms_sum, 1_200_075);
        assert_eq!(tally(&c, "nope").unwrap(), Tally::default());

        let listed = jobs(&c).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].api.as_str(), listed[0].end_ns), ("sum", None));
    }
}
