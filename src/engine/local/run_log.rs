//! The engine's own lines in a worker's log (`cortex: ...`), and what the last lines of a run
//! say when it ends badly.

use std::path::Path;

/// How many lines of output an error message carries.
const ERROR_TAIL_LINES: usize = 12;

/// Appends one of the engine's own lines to a replica's log (on a blocking thread).
pub(crate) async fn append_log(path: &Path, line: &str) {
    let (path, line) = (path.to_path_buf(), line.to_string());
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = super::rotating::append(&path, format!("{line}\n").as_bytes());
    })
    .await;
}

/// The error shown for an exit: the worker's own `cortex: error:` line when it wrote one, then
/// the last lines of its output (without that line again).
pub(crate) fn describe_exit(log_path: &Path, noun: &str, code_text: &str) -> String {
    let tail = super::rotating::tail_lines(log_path, 200);
    // Only this run's output: after the last "starting" line, without the engine's exit lines.
    let starting = format!("cortex: starting {noun} ");
    let start = tail
        .iter()
        .rposition(|l| l.starts_with(&starting))
        .map_or(0, |i| i + 1);
    let exit_line = format!("cortex: {noun} ");
    let run: Vec<&String> = tail[start..]
        .iter()
        .filter(|l| !l.starts_with(&exit_line))
        .collect();
    let headline = run
        .iter()
        .find_map(|l| l.strip_prefix("cortex: error: "))
        .map(str::to_string)
        .unwrap_or_else(|| format!("the {noun} exited with {code_text}"));
    // The headline is said once: not again in the output below it.
    let own_line = format!("cortex: error: {headline}");
    let output: Vec<&str> = run
        .iter()
        .map(|l| l.as_str())
        .filter(|l| *l != own_line)
        .collect();
    let last = &output[output.len().saturating_sub(ERROR_TAIL_LINES)..];
    if last.is_empty() {
        headline
    } else {
        format!("{headline}\n{}", last.join("\n"))
    }
}
