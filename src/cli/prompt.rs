//! Yes/no questions on the terminal.

use std::io::{IsTerminal, Write};

/// Asks a yes/no question on stderr; `Err` explains how to proceed when stdin is not a
/// terminal.
pub fn confirm(question: &str, skip_hint: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{question} (stdin is not a terminal, so cortex cannot ask; {skip_hint})");
    }
    eprint!("{question} (y/n): ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
