//! The server process's own numbers, read from `/proc/self` at scrape time, under the names
//! every Prometheus client uses (`process_*`, no prefix): CPU seconds, resident and virtual
//! memory, open and allowed file descriptors, start time. `prometheus-client` has no process
//! collector; what cannot be read (not Linux) is left out.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// What `/proc/self` said.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    /// Seconds since the Unix epoch.
    pub start_time: f64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// Fields of `/proc/<pid>/stat` after the command (which may hold spaces and parentheses):
/// utime, stime (clock ticks), starttime (ticks after boot), vsize (bytes), rss (pages).
fn parse_stat(stat: &str) -> Option<(u64, u64, u64, u64, u64)> {
    let after = &stat[stat.rfind(')')? + 1..];
    // `after` starts at field 3 (state): field n is at index n - 3.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)?, field(15)?, field(22)?, field(23)?, field(24)?))
}

/// `btime` of `/proc/stat`: when the machine booted (Unix seconds).
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits`.
fn max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl ProcessSample {
    /// Reads this process's numbers; `None` where `/proc` is not there.
    pub fn read() -> Option<ProcessSample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let (utime, stime, start_ticks, vsize, rss_pages) = parse_stat(&stat)?;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s))
            .unwrap_or(0);
        // SAFETY: sysconf only reads configuration values.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
        let page = u64::try_from(page).unwrap_or(4096);
        Some(ProcessSample {
            cpu_seconds: (utime + stime) as f64 / ticks,
            resident_bytes: rss_pages.saturating_mul(page),
            virtual_bytes: vsize,
            start_time: boot as f64 + start_ticks as f64 / ticks,
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|l| max_fds(&l)),
        })
    }
}

/// The process sample as a collector (nothing when it could not be read).
#[derive(Debug, Default)]
pub struct ProcessCollector(pub Option<ProcessSample>);

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = self.0 else {
            return Ok(());
        };
        let (seconds, bytes) = (Unit::Seconds, Unit::Bytes);
        encoder
            .encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds.",
                Some(&seconds),
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&p.cpu_seconds, None)?;
        let gauges: [(&str, &str, Option<&Unit>, Option<f64>); 5] = [
            (
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(&bytes),
                Some(p.resident_bytes as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Some(&bytes),
                Some(p.virtual_bytes as f64),
            ),
            (
                "process_start_time",
                "Start time of the process since unix epoch in seconds.",
                Some(&seconds),
                Some(p.start_time),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                p.open_fds.map(|n| n as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                p.max_fds.map(|n| n as f64),
            ),
        ];
        for (name, help, unit, value) in gauges {
            if let Some(v) = value {
                encoder
                    .encode_descriptor(name, help, unit, MetricType::Gauge)?
                    .encode_gauge(&v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_line_is_read_after_a_command_with_spaces_and_parentheses() {
        let stat = "42 (cortex (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 \
                    12345 1000000 300 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((250, 50, 12345, 1_000_000, 300)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_fds(limits), Some(1024));
    }

    #[test]
    fn this_process_can_be_read_on_linux() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let p = ProcessSample::read().expect("/proc/self is readable");
        assert!(
            p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes,
            "{p:?}"
        );
        assert!(p.open_fds.is_some_and(|n| n > 0), "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(p.start_time > 1e9 && p.start_time <= now + 1.0, "{p:?}");
    }
}
