//! Memory limits of the local engine where no memory cgroup can be made (`cgroup.rs` is the
//! first choice): a replica with `compute.mem` may keep at most that many bytes resident across
//! its process group (the shim's worker processes and whatever the predictor starts count too).
//! The engine samples the group's resident memory and kills the group once it is over, as a
//! cgroup's OOM killer would; the replica is then reported as killed for memory. It needs no
//! privileges and works the same for python and command predictors. It is chosen over a limit
//! on the address space (`RLIMIT_AS`), which would break programs that reserve much more than
//! they use (numpy's BLAS threads, PyTorch, every thread's stack) and makes allocations fail
//! with `MemoryError` instead of ending the replica in a way the engine can tell apart.

use std::time::Duration;

/// How often a limited replica's memory is sampled (`CORTEX_MEMORY_POLL_MS` changes it).
fn poll_every() -> Duration {
    std::env::var("CORTEX_MEMORY_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_millis(100), Duration::from_millis)
}

/// Resolves with the resident bytes seen once the processes of group `pgid` use more than
/// `limit` together. Never resolves otherwise.
pub(super) async fn exceeded(pgid: u32, limit: u64) -> u64 {
    let mut tick = tokio::time::interval(poll_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let used = tokio::task::spawn_blocking(move || group_rss(pgid))
            .await
            .unwrap_or(0);
        if used > limit {
            return used;
        }
    }
}

/// The resident memory of every process whose process group is `pgid`, in bytes.
pub(super) fn group_rss(pgid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    // SAFETY: sysconf only reads a system constant.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| parse_stat(&stat))
        .filter(|(group, _)| *group == pgid)
        .map(|(_, pages)| pages * page)
        .sum()
}

/// A `/proc/<pid>/stat` line's process group and resident pages. The command name (field 2)
/// is in parentheses and may hold spaces and parentheses itself, so fields are counted from
/// the last `)`.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (3), ppid (4), pgrp (5), … rss (24).
    let pgrp = fields.get(2)?.parse().ok()?;
    let rss = fields.get(21)?.parse().ok()?;
    Some((pgrp, rss))
}

/// Bytes in whole MiB, for messages.
pub(crate) fn mib(bytes: u64) -> String {
    format!("{}MiB", bytes.div_ceil(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "4242 (my (odd) name) S 1 4240 4240 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 \
                    12345 10485760 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        assert_eq!(parse_stat(line), Some((4240, 2560)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn this_process_group_uses_some_memory() {
        // SAFETY: getpgrp only reads this process's group id.
        let group = unsafe { libc::getpgrp() } as u32;
        assert!(group_rss(group) > 1 << 20);
        assert_eq!(group_rss(u32::MAX), 0);
    }

    #[test]
    fn sizes_are_whole_mib() {
        assert_eq!(mib(100 << 20), "100MiB");
        assert_eq!(mib((100 << 20) + 1), "101MiB");
    }
}
