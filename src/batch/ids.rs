//! Job ids: cortex's "monotonically decreasing" ids, so that a listing sorted by id shows the
//! newest job first.

/// The id of a job submitted `unix_nanos` after the epoch: 16 lower-case hex digits of
/// `i64::MAX - unix_nanos`.
pub fn job_id(unix_nanos: i64) -> String {
    format!("{:016x}", i64::MAX.saturating_sub(unix_nanos.max(0)))
}

/// Whether `s` looks like a job id (16 hex digits), for a 404 that says so.
pub fn is_job_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_jobs_sort_first() {
        let (older, newer) = (
            job_id(1_700_000_000_000_000_000),
            job_id(1_700_000_000_000_000_001),
        );
        assert!(newer < older, "{newer} < {older}");
        assert!(is_job_id(&older) && is_job_id(&newer));
        assert_eq!(job_id(0), "7fffffffffffffff");
        assert!(!is_job_id("not-a-job") && !is_job_id("7fffffffffffffffff"));
    }
}
