//! How a wait shows where it stands, on stderr (stdout stays for `-o json`): a spinner with
//! the current status on a terminal, one line per change otherwise (CI logs, pipes,
//! `TERM=dumb`). Nothing is coloured, so `NO_COLOR` has nothing to turn off.

use std::io::{IsTerminal, Write};
use std::time::Duration;

pub struct Progress {
    spinner: Option<indicatif::ProgressBar>,
    /// The last line written (piped): a line is written only when it changes.
    last: String,
}

impl Progress {
    /// A spinner when stderr is a terminal that can redraw, lines otherwise.
    pub fn new() -> Progress {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        let spinner = (std::io::stderr().is_terminal() && !dumb).then(|| {
            let s = indicatif::ProgressBar::new_spinner();
            s.enable_steady_tick(Duration::from_millis(100));
            s
        });
        Progress {
            spinner,
            last: String::new(),
        }
    }

    /// Shows `line` (e.g. `iris: updating: 0 of 1 replicas ready`).
    pub fn show(&mut self, line: &str) {
        let line = super::super::style::printable(line);
        let line: &str = &line;
        if line == self.last {
            return;
        }
        self.last = line.to_string();
        match &self.spinner {
            Some(s) => s.set_message(line.to_string()),
            None => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{line}");
            }
        }
    }

    /// Takes the spinner away, so what follows starts on a clean line.
    pub fn finish(self) {
        if let Some(s) = self.spinner {
            s.finish_and_clear();
        }
    }
}
