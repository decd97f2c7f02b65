//! The files an engine keeps a worker's output in, `<log root>/<api>/<replica id>.*` (the log,
//! its rotated generation, its offset, its streams), and the pruning of those of replicas an
//! API no longer runs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;

/// Removes one API's log directory `dir` on a blocking thread (its delete).
pub fn remove_dir(dir: PathBuf) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    })
}

/// [`prune`] on a blocking thread.
pub fn prune_dir(dir: PathBuf, sets: Vec<String>) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let sets = sets.into_iter().collect();
        let _ = tokio::task::spawn_blocking(move || prune(&dir, &sets)).await;
    })
}

/// Removes from `dir` (one API's logs) the files of every replica not of a set in `sets` (a
/// replica's id is its set's id, a dash and its number); returns how many. Blocking.
pub fn prune(dir: &Path, sets: &HashSet<String>) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(replica) = name
            .to_str()
            .and_then(|n| n.split_once('.'))
            .map(|(id, _)| id)
        else {
            continue;
        };
        let kept = replica
            .rsplit_once('-')
            .is_some_and(|(set, number)| sets.contains(set) && number.parse::<u32>().is_ok());
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !kept && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_files_of_replicas_kept_stay() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "api-aaaa-0.log",
            "api-aaaa-0.log.1",
            "api-aaaa-0.log.base",
            "api-aaaa-1.stdout.log",
            "api-bbbb-0.log",
            "api-bbbb-10.log",
            "api-bbbb-x.log",
            "notes",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let keep: HashSet<String> = ["api-bbbb".to_string()].into();
        assert_eq!(prune(dir.path(), &keep), 5);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["api-bbbb-0.log", "api-bbbb-10.log", "notes"]);
        assert_eq!(prune(&dir.path().join("absent"), &keep), 0);
    }
}
