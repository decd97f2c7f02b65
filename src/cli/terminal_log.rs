//! A log stream made safe for a terminal (`cortex logs` when stdout is one): replicas write
//! what they like, and a terminal acts on escape sequences. Text, newlines and tabs pass;
//! colours (SGR sequences, `ESC [ <digits ; :> m`) pass too, as `less -R` lets them, since
//! programs colour their logs and a colour can only change how text looks; every other
//! control character and sequence is shown escaped as [`style::printable`] shows it (an
//! `ESC` as `\u{1b}`, what follows it as text), and bytes that are not UTF-8 as `U+FFFD`.
//!
//! Chunks may split a character or a colour sequence: the unfinished end waits for the next
//! chunk (or [`TerminalLog::finish`]).

use super::style;

/// The longest colour sequence kept as one; a longer one is shown escaped.
const MAX_SGR: usize = 32;

const ESC: char = '\x1b';

#[derive(Debug, Default)]
pub struct TerminalLog {
    /// The start of a UTF-8 character cut by the end of the last chunk.
    partial: Vec<u8>,
    /// An escape sequence begun (`ESC`, `ESC [`, `ESC [ 1 ; 3`), not yet known to be a colour.
    sequence: String,
}

impl TerminalLog {
    pub fn new() -> TerminalLog {
        TerminalLog::default()
    }

    /// What to write for `chunk`.
    pub fn take(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut bytes = std::mem::take(&mut self.partial);
        bytes.extend_from_slice(chunk);
        let mut out = String::with_capacity(bytes.len());
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    self.text(&mut out, text);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    self.text(&mut out, std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        None => {
                            self.partial = after.to_vec();
                            break;
                        }
                        Some(n) => {
                            self.text(&mut out, "\u{fffd}");
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        out.into_bytes()
    }

    /// What is left at the end of the stream: an unfinished character or sequence, escaped.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = String::new();
        if !std::mem::take(&mut self.partial).is_empty() {
            self.text(&mut out, "\u{fffd}");
        }
        self.flush_sequence(&mut out);
        out.into_bytes()
    }

    fn text(&mut self, out: &mut String, text: &str) {
        for c in text.chars() {
            self.char(out, c);
        }
    }

    fn char(&mut self, out: &mut String, c: char) {
        if !self.sequence.is_empty() {
            let csi = self.sequence.len() > 1;
            if !csi && c == '[' {
                self.sequence.push(c);
                return;
            }
            if csi && c == 'm' {
                out.push_str(&self.sequence);
                out.push(c);
                self.sequence.clear();
                return;
            }
            if csi && (c.is_ascii_digit() || c == ';' || c == ':') && self.sequence.len() < MAX_SGR
            {
                self.sequence.push(c);
                return;
            }
            self.flush_sequence(out);
        }
        if c == ESC {
            self.sequence.push(c);
        } else {
            style::push_printable(out, c);
        }
    }

    /// A begun sequence that is not a colour: shown escaped.
    fn flush_sequence(&mut self, out: &mut String) {
        for c in std::mem::take(&mut self.sequence).chars() {
            style::push_printable(out, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TerminalLog;

    fn all(chunks: &[&[u8]]) -> String {
        let mut t = TerminalLog::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(t.take(c));
        }
        out.extend(t.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_and_colours_pass_and_other_sequences_are_shown() {
        assert_eq!(all(&[b"one\n\ttwo\n"]), "one\n\ttwo\n");
        assert_eq!(
            all(&[b"\x1b[1;31mred\x1b[0m \x1b[m"]),
            "\x1b[1;31mred\x1b[0m \x1b[m"
        );
        assert_eq!(
            all(&[b"\x1b]0;PWNED\x07\x1b[2J\r"]),
            "\\u{1b}]0;PWNED\\u{7}\\u{1b}[2J\\r"
        );
        assert_eq!(
            all(&["\u{9b}2J \u{202e}x".as_bytes()]),
            "\\u{9b}2J \\u{202e}x"
        );
        assert_eq!(all(&[b"\x1b\x1b[32mok"]), "\\u{1b}\x1b[32mok");
        let long = format!("\x1b[{}m", "1;".repeat(40));
        assert!(all(&[long.as_bytes()]).starts_with("\\u{1b}[1;"));
    }

    #[test]
    fn a_character_or_sequence_cut_between_chunks_is_whole() {
        let e = "é".as_bytes();
        assert_eq!(all(&[b"caf", &e[..1], &e[1..], b"\n"]), "café\n");
        assert_eq!(all(&[b"\x1b[3", b"1mred"]), "\x1b[31mred");
        assert_eq!(all(&[b"\x1b", b"]0;x\x07"]), "\\u{1b}]0;x\\u{7}");
        assert_eq!(all(&[b"end\x1b[3"]), "end\\u{1b}[3");
        assert_eq!(all(&[b"end", &e[..1]]), "end\u{fffd}");
        assert_eq!(all(&[b"bad \xff\xfe byte"]), "bad \u{fffd}\u{fffd} byte");
        // A lone C1 byte (not UTF-8) never reaches the terminal as itself.
        assert_eq!(all(&[b"\x9b2J"]), "\u{fffd}2J");
    }
}
