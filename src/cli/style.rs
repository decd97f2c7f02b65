//! Whether a command may colour what it prints: as other command-line tools decide, only when
//! it writes to a terminal (stdout and stderr both: `cortex server | tee log` gets plain text)
//! and `NO_COLOR` is unset or empty (<https://no-color.org>), and `TERM` is not `dumb`; and
//! what of the server's text may reach a terminal as it is.

use std::borrow::Cow;
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

/// `text` as it may be shown on a terminal: what the server sent (names, messages, a
/// replica's words) must not drive the terminal. Newlines and tabs stay; every other control
/// character (C0, DEL, C1), the direction marks, overrides and isolates that reorder what is
/// shown, and the line and paragraph separators, are written visibly as `\u{1b}` (the code
/// point in hex), a carriage return as `\r`.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        push_printable(&mut out, c);
    }
    Cow::Owned(out)
}

/// Pushes `c`, escaped when it is unsafe on a terminal ([`printable`]).
pub fn push_printable(out: &mut String, c: char) {
    match c {
        '\r' => out.push_str("\\r"),
        c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

/// Whether a terminal would act on `c` rather than show it.
fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\0'..='\x08' | '\x0b'..='\x1f' | '\x7f'..='\u{9f}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
            | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
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

    #[test]
    fn what_would_drive_a_terminal_is_shown_escaped() {
        use super::printable;
        assert_eq!(
            printable("plain\ttext\nnext, caf\u{e9} \u{1f600}"),
            "plain\ttext\nnext, caf\u{e9} \u{1f600}"
        );
        assert!(matches!(printable("ok"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            printable("\x1b]0;PWNED\x07\x1b[2J"),
            "\\u{1b}]0;PWNED\\u{7}\\u{1b}[2J"
        );
        assert_eq!(printable("a\rb\x7f\u{9b}c"), "a\\rb\\u{7f}\\u{9b}c");
        assert_eq!(
            printable("\u{202e}cod.exe\u{2066}\u{2069}\u{202a}"),
            "\\u{202e}cod.exe\\u{2066}\\u{2069}\\u{202a}"
        );
        // What an escape looks like is itself safe: escaping twice changes nothing more.
        assert_eq!(printable("a\u{200f}b\u{2028}c"), "a\\u{200f}b\\u{2028}c");
        let once = printable("\x1b[31m").into_owned();
        assert_eq!(printable(&once), once);
    }
}
