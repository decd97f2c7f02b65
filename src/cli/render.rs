//! Text rendering shared by commands: cortex-style tables, ages, sizes and latencies.

use comfy_table::{presets, CellAlignment, Table};

use super::style;

/// A borderless table with columns three spaces apart, as cortex prints them. Cells are made
/// printable ([`style::printable`]) before the columns are measured: they hold the server's
/// names and messages.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(headers.iter().copied());
    for row in rows {
        t.add_row(row.iter().map(|cell| style::printable(cell).into_owned()));
    }
    let last = headers.len().saturating_sub(1);
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 3 }));
        column.set_cell_alignment(CellAlignment::Left);
    }
    t.lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `Ns`, `Nm`, `Nh` or `Nd` since `then` (unix seconds), like cortex's ages.
pub fn age(then: i64, now: i64) -> String {
    let secs = (now - then).max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Mean latency as cortex prints it: `%.6g ms` below a second, `%.6g s` above.
pub fn latency(ms: Option<f64>) -> String {
    match ms {
        None => "-".to_string(),
        Some(ms) if ms < 1000.0 => format!("{} ms", significant(ms, 6)),
        Some(ms) => format!("{} s", significant(ms / 1000.0, 6)),
    }
}

/// `%g`-like formatting with `digits` significant digits and no trailing zeros.
fn significant(x: f64, digits: usize) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (digits as i32 - 1 - magnitude).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A byte count in binary units: `512 B`, `1.5 KiB`, `32.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_three_spaces_apart() {
        let t = table(&["a", "long header"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "a     long header\nxyz   1");
    }

    #[test]
    fn a_cell_with_control_characters_is_escaped_and_measured_as_shown() {
        let t = table(&["name", "x"], &[vec!["a\x1b[2J".into(), "1".into()]]);
        assert_eq!(t, "name         x\na\\u{1b}[2J   1");
    }

    #[test]
    fn ages_latencies_and_sizes() {
        assert_eq!(age(0, 59), "59s");
        assert_eq!(age(0, 61), "1m");
        assert_eq!(age(0, 47 * 3600), "47h");
        assert_eq!(age(0, 49 * 3600), "2d");
        assert_eq!(latency(None), "-");
        assert_eq!(latency(Some(3.12854)), "3.12854 ms");
        assert_eq!(latency(Some(3128.5)), "3.1285 s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}

/// A time as cortex prints a job's: `29 Jul 2020 14:38:01 UTC`, from an RFC 3339 time (the
/// text itself when it is not one).
pub fn utc_time(rfc3339: &str) -> String {
    let Some(ns) = crate::clock::parse_rfc3339(rfc3339) else {
        return rfc3339.to_string();
    };
    let secs = (ns / 1_000_000_000) as libc::time_t;
    // SAFETY: gmtime_r writes only into the `tm` we pass.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::gmtime_r(&secs, &mut tm).is_null() {
            return rfc3339.to_string();
        }
        tm
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS
        .get(tm.tm_mon.clamp(0, 11) as usize)
        .copied()
        .unwrap_or("?");
    format!(
        "{:02} {month} {} {:02}:{:02}:{:02} UTC",
        tm.tm_mday,
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// Whole seconds in Go's duration format, as cortex prints a job's: `30s`, `5m20s`, `1h0m5s`.
pub fn go_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Seconds in Go's duration format truncated to the millisecond: `12ms`, `1.5s`, `2m3.25s`.
pub fn go_duration_ms(secs: f64) -> String {
    let ms = (secs * 1000.0).max(0.0) as i64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (whole, frac) = (ms / 1000, ms % 1000);
    let seconds = if frac == 0 {
        format!("{}s", whole % 60)
    } else {
        let f = format!("{frac:03}");
        format!("{}.{}s", whole % 60, f.trim_end_matches('0'))
    };
    match whole / 60 {
        0 => seconds,
        m if m < 60 => format!("{m}m{seconds}"),
        m => format!("{}h{}m{seconds}", m / 60, m % 60),
    }
}

#[cfg(test)]
mod job_time_tests {
    use super::*;

    #[test]
    fn job_times_read_as_cortex_prints_them() {
        assert_eq!(
            utc_time("2020-07-29T14:38:01.276007415Z"),
            "29 Jul 2020 14:38:01 UTC"
        );
        assert_eq!(utc_time("not a time"), "not a time");
        assert_eq!(go_duration(30), "30s");
        assert_eq!(go_duration(320), "5m20s");
        assert_eq!(go_duration(3605), "1h0m5s");
        assert_eq!(go_duration_ms(0.012), "12ms");
        assert_eq!(go_duration_ms(1.5), "1.5s");
        assert_eq!(go_duration_ms(20.0), "20s");
        assert_eq!(go_duration_ms(123.25), "2m3.25s");
    }
}

/// An API's configuration under a `title` line, indented as YAML.
pub fn configuration(title: &str, spec: &crate::api::ApiConfig) -> String {
    let mut out = format!("\n{title}\n");
    let yaml = serde_yaml::to_string(spec).unwrap_or_default();
    for line in yaml.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}
