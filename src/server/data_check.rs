//! Start-up checks of the data directory: an empty or missing database, or one without a
//! schema, beside an earlier server's data is damage, not a fresh install. Starting on it would forget every API, user,
//! token and job and replace the admin token, so the server refuses and says what to do.

use std::path::Path;

use anyhow::bail;

/// What an earlier server leaves beside its database.
const EARLIER_DATA: &[&str] = &["admin.token", "bundles", "projects"];

/// Refuses to start when the database is missing, empty (no byte in it, none waiting in its
/// write-ahead log) or without a schema while `data_dir` holds an earlier server's data.
pub fn check_database(data_dir: &Path, db_name: &str) -> anyhow::Result<()> {
    let db = data_dir.join(db_name);
    let size = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
    let wal = size(&data_dir.join(format!("{db_name}-wal"))).unwrap_or(0);
    let state = match size(&db) {
        None => Database::Missing,
        Some(0) if wal == 0 => Database::Empty,
        Some(_) if schema_version(&db) == Some(0) => Database::NoSchema,
        Some(_) => Database::Present,
    };
    let earlier: Vec<&str> = EARLIER_DATA
        .iter()
        .copied()
        .filter(|name| holds_data(&data_dir.join(name)))
        .collect();
    if let Some(why) = verdict(state, &earlier) {
        bail!(
            "{} {why}, but {} holds an earlier server's data ({}): starting would forget every api, user, token and job, and replace the admin token. Restore {db_name} from a backup (with its {db_name}-wal when it was copied from a running server); or, to start afresh on purpose, move the data directory aside",
            db.display(),
            data_dir.display(),
            earlier.join(", ")
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Database {
    Missing,
    Empty,
    /// A database file without a schema: a copy of a running server's database whose
    /// write-ahead log (where recent changes wait) was left behind, or a damaged log.
    NoSchema,
    Present,
}

/// The schema version the database at `path` holds (with its write-ahead log), where it can be
/// read (`None`: the open that follows says why it cannot).
fn schema_version(path: &Path) -> Option<i64> {
    let conn = rusqlite::Connection::open(path).ok()?;
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .ok()
}

/// Why the database cannot be started on (its state beside the earlier data found), or
/// `None`. Pure.
fn verdict(db: Database, earlier: &[&str]) -> Option<&'static str> {
    if earlier.is_empty() {
        return None;
    }
    match db {
        Database::Missing => Some("is missing"),
        Database::Empty => Some("is empty"),
        Database::NoSchema => {
            Some("holds no data (no schema: was it copied without its write-ahead log?)")
        }
        Database::Present => None,
    }
}

/// A file, or a directory with something in it.
fn holds_data(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some()),
        Ok(_) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_database_lost_beside_earlier_data_is_refused() {
        assert_eq!(verdict(Database::Missing, &[]), None, "a fresh install");
        assert_eq!(
            verdict(Database::Empty, &[]),
            None,
            "a first start that stopped early"
        );
        assert_eq!(verdict(Database::Present, &["admin.token"]), None);
        assert_eq!(
            verdict(Database::Empty, &["admin.token", "bundles"]),
            Some("is empty")
        );
        assert_eq!(
            verdict(Database::Missing, &["projects"]),
            Some("is missing")
        );
        assert!(verdict(Database::NoSchema, &["bundles"]).is_some());
        assert_eq!(verdict(Database::NoSchema, &[]), None);
    }

    #[test]
    fn an_empty_database_beside_an_admin_token_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_database(dir.path(), "cortex.db").is_ok());
        std::fs::create_dir(dir.path().join("bundles")).unwrap();
        std::fs::write(dir.path().join("server.log"), "x").unwrap();
        assert!(
            check_database(dir.path(), "cortex.db").is_ok(),
            "no earlier data yet"
        );
        std::fs::write(dir.path().join("cortex.db"), "").unwrap();
        std::fs::write(dir.path().join("admin.token"), "ctx_u_x").unwrap();
        let e = check_database(dir.path(), "cortex.db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cortex.db is empty"), "{e}");
        assert!(e.contains("(admin.token)"), "{e}");
        assert!(e.contains("Restore cortex.db from a backup"), "{e}");
    }
}
