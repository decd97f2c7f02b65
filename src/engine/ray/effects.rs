//! What follows a sync beyond the state change: output and the engine's lines into the
//! workers' log files (in order, on a blocking thread), the error of a run that ended, and
//! the health checks of a program that listens (`health.rs`).

use std::net::SocketAddr;
use std::sync::Arc;

use super::handle::RayReplica;
use super::{health, Shared};
use crate::engine::local::output::OutputPaths;
use crate::engine::local::rotating;
use crate::engine::local::run_log::describe_exit;

/// What a sync leads to beyond the state change, done once the groups' lock is released.
#[derive(Debug)]
pub(super) enum Effect {
    /// Output to append to a replica's log files.
    Output {
        replica: Arc<RayReplica>,
        stdout: String,
        stderr: String,
    },
    /// One of the engine's own lines for a replica's log.
    Line {
        replica: Arc<RayReplica>,
        line: String,
    },
    /// A run ended: its error is read from the log (`code_text` says how it ended).
    Exited {
        replica: Arc<RayReplica>,
        generation: u64,
        headline: Option<String>,
        code_text: String,
    },
    /// Its program listens: `/healthz` is to be polled until it answers.
    CheckHealth {
        replica: Arc<RayReplica>,
        generation: u64,
        addr: SocketAddr,
    },
}

/// Does `effects` in order (health checks start at once, the rest in one background task).
pub(super) fn apply(shared: &Arc<Shared>, effects: Vec<Effect>) {
    let mut files = Vec::new();
    for effect in effects {
        match effect {
            Effect::CheckHealth {
                replica,
                generation,
                addr,
            } => {
                tokio::spawn(health::check(
                    shared.http.clone(),
                    replica,
                    generation,
                    addr,
                ));
            }
            other => files.push(other),
        }
    }
    if files.is_empty() {
        return;
    }
    tokio::task::spawn_blocking(move || {
        for effect in files {
            write(effect);
        }
    });
}

fn write(effect: Effect) {
    match effect {
        Effect::Output {
            replica,
            stdout,
            stderr,
        } => {
            let paths = OutputPaths::of(&replica.log_path);
            make_dir(&replica);
            for (text, own) in [(stdout, &paths.stdout), (stderr, &paths.stderr)] {
                if !text.is_empty() {
                    let _ = rotating::append(own, text.as_bytes());
                    let _ = rotating::append(&paths.combined, text.as_bytes());
                }
            }
        }
        Effect::Line { replica, line } => append_line(&replica, &line),
        Effect::Exited {
            replica,
            generation,
            headline,
            code_text,
        } => {
            let described = describe_exit(&replica.log_path, replica.noun, &code_text);
            let error = match headline {
                // The actor was lost: its own last words, if any, follow.
                Some(headline) => match described.split_once('\n') {
                    Some((_, rest)) => format!("{headline}\n{rest}"),
                    None => headline,
                },
                None => described,
            };
            replica.update(|t| {
                if t.desired.generation == generation || t.exit_taken == Some(generation) {
                    t.snapshot.last_error = Some(error);
                }
            });
        }
        Effect::CheckHealth { .. } => {}
    }
}

/// Appends one of the engine's own lines to `replica`'s log. Blocking.
pub(super) fn append_line(replica: &RayReplica, line: &str) {
    make_dir(replica);
    let _ = rotating::append(&replica.log_path, format!("{line}\n").as_bytes());
}

fn make_dir(replica: &RayReplica) {
    if let Some(dir) = replica.log_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
}
