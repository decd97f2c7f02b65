//! Whether a command may colour what it prints: as other command-line tools decide, only when
//! it writes to a terminal (stdout and stderr both: `cortex server | tee log` gets plain text)
//! and `NO_COLOR` is unset or empty (<https://no-color.org>), and `TERM` is not `dumb`.

use std::io::IsTerminal;

/// Whether colours (ANSI escape codes) may be written.
pub fn colors() -> bool {
    decide(
        std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

fn decide(
    terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::decide;

    #[test]
    fn colours_need_a_terminal_and_no_no_color() {
        let xterm = Some(OsStr::new("xterm"));
        assert!(decide(true, None, xterm));
        assert!(decide(true, Some(OsStr::new("")), None));
        assert!(!decide(false, None, xterm));
        assert!(!decide(true, Some(OsStr::new("1")), xterm));
        assert!(!decide(true, None, Some(OsStr::new("dumb"))));
    }
}
