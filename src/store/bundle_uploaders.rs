//! Who uploaded each bundle. A bundle is content-addressed, so several users may have uploaded
//! the same bytes; each is recorded once they really sent them. Whether a caller may use a
//! bundle is decided in `server/bundle_access.rs` from these facts.

use rusqlite::{params, Connection, OptionalExtension};

use super::{ModelRow, StoreError};
use crate::clock::now;

/// Records that `user_id` uploaded the bundle `sha` (again: no change).
pub fn add(conn: &Connection, sha: &str, user_id: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO bundle_uploaders (sha256, user_id, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(sha256, user_id) DO NOTHING",
        params![sha, user_id, now()],
    )?;
    Ok(())
}

/// Whether `user_id` uploaded the bundle `sha`.
pub fn uploaded_by(conn: &Connection, sha: &str, user_id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM bundle_uploaders WHERE sha256 = ?1 AND user_id = ?2",
            params![sha, user_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The models whose current bundle is `sha` and whose replicas get the bundle's `.env` (not a
/// copy saved by someone who may not see the base's secrets).
pub fn serving_with_secrets(conn: &Connection, sha: &str) -> Result<Vec<ModelRow>, StoreError> {
    let ids: Vec<String> = conn
        .prepare("SELECT id FROM models WHERE bundle_sha256 = ?1 AND inherits_env = 1")?
        .query_map([sha], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        rows.extend(super::models::get(conn, &id)?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{migrations::migrate, users};

    #[test]
    fn uploaders_are_recorded_once_each() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        migrate(&mut c).unwrap();
        let a = users::create_user(&c, "a", false).unwrap();
        let b = users::create_user(&c, "b", false).unwrap();
        c.execute(
            "INSERT INTO bundles (sha256, size, created_at) VALUES ('s', 1, 0)",
            [],
        )
        .unwrap();
        add(&c, "s", &a.id).unwrap();
        add(&c, "s", &a.id).unwrap();
        assert!(uploaded_by(&c, "s", &a.id).unwrap());
        assert!(!uploaded_by(&c, "s", &b.id).unwrap());
        add(&c, "s", &b.id).unwrap();
        assert!(uploaded_by(&c, "s", &b.id).unwrap());
        // A forgotten bundle forgets its uploaders.
        c.execute("DELETE FROM bundles WHERE sha256 = 's'", [])
            .unwrap();
        assert!(!uploaded_by(&c, "s", &a.id).unwrap());
    }
}
