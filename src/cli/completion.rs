//! `cortex completion <shell>`.

use clap_complete::Shell;

/// Writes the completion script for `shell` to stdout.
pub fn run(shell: Shell) {
    clap_complete::generate(
        shell,
        &mut super::command(),
        "cortex",
        &mut std::io::stdout(),
    );
}
