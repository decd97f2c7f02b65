//! Schema migrations, applied in order and recorded in `PRAGMA user_version`.

use rusqlite::Connection;

use super::StoreError;

/// Each entry moves the schema from version `index` to `index + 1`. Never edit a released entry;
/// append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: users, tokens, bundles, models (APIs), replicas.
    r#"
    CREATE TABLE users (
        id          TEXT PRIMARY KEY,
        username    TEXT NOT NULL UNIQUE,
        admin       INTEGER NOT NULL DEFAULT 0,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        hash        TEXT PRIMARY KEY,          -- hex SHA-256 of the token; the token is never stored
        kind        TEXT NOT NULL CHECK (kind IN ('user', 'job')),
        user_id     TEXT REFERENCES users(id) ON DELETE CASCADE,
        model_id    TEXT,                      -- job tokens: the model they are scoped to
        name        TEXT NOT NULL DEFAULT '',
        expires_at  INTEGER,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX tokens_model ON tokens(model_id);
    CREATE TABLE bundles (
        sha256      TEXT PRIMARY KEY,
        size        INTEGER NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE models (
        id                  TEXT PRIMARY KEY,
        name                TEXT NOT NULL UNIQUE,
        kind                TEXT NOT NULL,
        owner_id            TEXT NOT NULL REFERENCES users(id),
        access              TEXT NOT NULL DEFAULT 'private',
        default_permission  TEXT NOT NULL DEFAULT 'read',
        deploy_status       TEXT NOT NULL DEFAULT 'not_started',
        spec_json           TEXT NOT NULL,
        spec_hash           TEXT NOT NULL,
        bundle_sha256       TEXT NOT NULL REFERENCES bundles(sha256),
        config_file         TEXT NOT NULL,
        created_at          INTEGER NOT NULL,
        updated_at          INTEGER NOT NULL
    );
    CREATE TABLE replicas (
        id          TEXT PRIMARY KEY,
        model_id    TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        spec_hash   TEXT NOT NULL,
        log_path    TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    "#,
    // 2: the spec that last served (became ready), so a restart brings it back next to a newer
    // spec that never did.
    r#"
    ALTER TABLE models ADD COLUMN serving_spec_json TEXT;
    ALTER TABLE models ADD COLUMN serving_spec_hash TEXT;
    ALTER TABLE models ADD COLUMN serving_bundle_sha256 TEXT REFERENCES bundles(sha256);
    "#,
    // 3: replica logs are the engine's to keep and find (by API and replica id), not a path.
    r#"
    ALTER TABLE replicas DROP COLUMN log_path;
    "#,
    // 4: teams and model access (Model Bazaar), deployments numbered with their own job tokens,
    // errors and warnings per deployment, deploy parameters and metadata, saved models (a
    // base model's bundle with the saved files over it).
    r#"
    CREATE TABLE teams (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE team_members (
        team_id     TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
        user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        team_admin  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (team_id, user_id)
    );
    ALTER TABLE models ADD COLUMN team_id TEXT REFERENCES teams(id) ON DELETE SET NULL;
    ALTER TABLE models ADD COLUMN deployment_name TEXT;
    CREATE UNIQUE INDEX models_deployment_name ON models(deployment_name)
        WHERE deployment_name IS NOT NULL;
    ALTER TABLE models ADD COLUMN deploy_params_json TEXT;
    ALTER TABLE models ADD COLUMN metadata_json TEXT;
    ALTER TABLE models ADD COLUMN deployment INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE models ADD COLUMN base_model_id TEXT;
    ALTER TABLE models ADD COLUMN save_pending INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE models ADD COLUMN overlay_sha256 TEXT;
    ALTER TABLE models ADD COLUMN inherits_env INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE tokens ADD COLUMN deployment INTEGER;
    -- Job tokens from before deployments were numbered belong to replicas of a server that is
    -- gone; left bound to no deployment they would pass for update tokens.
    DELETE FROM tokens WHERE kind = 'job';
    CREATE TABLE deploy_logs (
        id          INTEGER PRIMARY KEY,
        model_id    TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        deployment  INTEGER NOT NULL,
        level       TEXT NOT NULL CHECK (level IN ('warning', 'error')),
        message     TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX deploy_logs_model ON deploy_logs(model_id, deployment);
    "#,
    // 5: BatchAPI jobs and their batches: the durable queue.
    r#"
    CREATE TABLE jobs (
        id                  TEXT PRIMARY KEY,
        model_id            TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        api_name            TEXT NOT NULL,
        workers             INTEGER NOT NULL,
        config_json         TEXT NOT NULL,
        timeout_secs        INTEGER,
        max_receive_count   INTEGER NOT NULL,
        status              TEXT NOT NULL,
        total_batches       INTEGER NOT NULL DEFAULT 0,
        failure             TEXT,
        created_at          INTEGER NOT NULL,
        start_time          INTEGER,
        end_time            INTEGER
    );
    CREATE INDEX jobs_model ON jobs(model_id);
    CREATE TABLE batches (
        job_id          TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        seq             INTEGER NOT NULL,
        payload         TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'succeeded', 'failed')),
        receive_count   INTEGER NOT NULL DEFAULT 0,
        lease_id        TEXT,
        lease_until_ms  INTEGER,
        last_error      TEXT,
        duration_ms     INTEGER,
        PRIMARY KEY (job_id, seq)
    );
    CREATE INDEX batches_state ON batches(job_id, state);
    "#,
    // 6: jobs as the server runs them (no server wrote schema 5's jobs: they are made again),
    // times in nanoseconds for the seed's time format, and job tokens bound to one job.
    r#"
    DROP TABLE batches;
    DROP TABLE jobs;
    CREATE TABLE jobs (
        id                  TEXT PRIMARY KEY,
        model_id            TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
        api_name            TEXT NOT NULL,
        workers             INTEGER NOT NULL,
        config_json         TEXT NOT NULL,
        timeout_secs        INTEGER,
        max_receive_count   INTEGER NOT NULL,
        status              TEXT NOT NULL,
        total_batches       INTEGER NOT NULL DEFAULT 0,
        failure             TEXT,
        created_ns          INTEGER NOT NULL,
        start_ns            INTEGER,
        end_ns              INTEGER,
        completion_started  INTEGER NOT NULL DEFAULT 0,
        workers_succeeded   INTEGER NOT NULL DEFAULT 0,
        workers_failed      INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_model ON jobs(model_id);
    CREATE INDEX jobs_open ON jobs(end_ns);
    CREATE TABLE batches (
        job_id          TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        seq             INTEGER NOT NULL,
        payload         TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'succeeded', 'failed')),
        receive_count   INTEGER NOT NULL DEFAULT 0,
        crashes         INTEGER NOT NULL DEFAULT 0,
        lease_id        TEXT,
        lease_until_ms  INTEGER,
        last_error      TEXT,
        duration_ms     INTEGER,
        PRIMARY KEY (job_id, seq)
    );
    CREATE INDEX batches_next ON batches(job_id, state, seq);
    CREATE INDEX batches_lapsing ON batches(job_id, state, lease_until_ms);
    ALTER TABLE tokens ADD COLUMN job_id TEXT;
    "#,
    // 7: bundles are bound to the users who uploaded them: a deploy may name only a bundle its
    // caller uploaded (or one an api the caller owns runs). The owners of the apis that run a
    // bundle today count as its uploaders, except owners of copies saved without the base's
    // secrets.
    r#"
    CREATE TABLE bundle_uploaders (
        sha256      TEXT NOT NULL REFERENCES bundles(sha256) ON DELETE CASCADE,
        user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (sha256, user_id)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO bundle_uploaders (sha256, user_id, created_at)
        SELECT bundle_sha256, owner_id, created_at FROM models WHERE inherits_env = 1;
    INSERT OR IGNORE INTO bundle_uploaders (sha256, user_id, created_at)
        SELECT serving_bundle_sha256, owner_id, created_at FROM models
        WHERE inherits_env = 1 AND serving_bundle_sha256 IS NOT NULL;
    "#,
    // 8: Model Bazaar's clients. A model keeps the name its caller gave when that name is not a
    // route segment (`name` is then derived from it), and the deployment whose job reported its
    // own status is remembered: its word stands over what the server observes.
    r#"
    ALTER TABLE models ADD COLUMN given_name TEXT;
    CREATE UNIQUE INDEX models_given_name ON models(given_name) WHERE given_name IS NOT NULL;
    ALTER TABLE models ADD COLUMN reported_deployment INTEGER;
    "#,
    // 9: the deployment of the spec that serves, so that a restart resumes it as itself (not as
    // the deployment before the current one, which another version may have been).
    r#"
    ALTER TABLE models ADD COLUMN serving_deployment INTEGER;
    "#,
];

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {current}, newer than this cortex understands ({}); upgrade cortex",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Checks that the database has every table and column its schema version promises (a
/// database damaged or edited by hand fails here, at start-up, rather than on every request
/// that reads what is missing).
pub(super) fn verify(conn: &Connection) -> Result<(), StoreError> {
    let mut expected = Connection::open_in_memory()?;
    migrate(&mut expected)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let have = columns(conn)?;
    for (table, cols) in columns(&expected)? {
        let Some(present) = have.iter().find(|(t, _)| *t == table).map(|(_, c)| c) else {
            return Err(StoreError::Corrupt(format!(
                "the database has no table `{table}` although its schema version is {version}"
            )));
        };
        if let Some(col) = cols.iter().find(|c| !present.contains(c)) {
            return Err(StoreError::Corrupt(format!(
                "the database's table `{table}` has no column `{col}` although its schema version is {version}"
            )));
        }
    }
    Ok(())
}

/// Every table of the database with its columns.
fn columns(conn: &Connection) -> Result<Vec<(String, Vec<String>)>, StoreError> {
    let mut tables = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )?;
    let names = tables
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    names
        .into_iter()
        .map(|table| {
            let mut info = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
            let cols = info
                .query_map([&table], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((table, cols))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_table_or_column_is_named() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        verify(&conn).unwrap();
        conn.execute_batch("ALTER TABLE batches DROP COLUMN crashes")
            .unwrap();
        let e = verify(&conn).unwrap_err().to_string();
        assert!(e.contains("table `batches` has no column `crashes`"), "{e}");
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute_batch("DROP TABLE deploy_logs").unwrap();
        let e = verify(&conn).unwrap_err().to_string();
        assert!(e.contains("no table `deploy_logs`"), "{e}");
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
    }
}

#[cfg(test)]
mod upgrade_tests {
    use rusqlite::Connection;

    use super::{migrate, MIGRATIONS};
    use crate::store::{models, users};

    /// A database as cortex left it before deployments were numbered (schema 3), with an API,
    /// a user token and a job token, brought up to date.
    #[test]
    fn a_schema_3_database_with_data_is_brought_up_to_date() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        for (i, sql) in MIGRATIONS[..3].iter().enumerate() {
            c.execute_batch(sql).unwrap();
            c.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
        }
        let admin = users::create_user(&c, "admin", true).unwrap();
        let user_token = users::issue_user_token(&c, &admin.id, "cli", None).unwrap();
        c.execute_batch(
            "INSERT INTO bundles (sha256, size, created_at) VALUES ('b', 1, 0);
             INSERT INTO tokens (hash, kind, model_id, created_at) VALUES ('old-job', 'job', 'm1', 0);",
        )
        .unwrap();
        c.execute(
            "INSERT INTO models (id, name, kind, owner_id, deploy_status, spec_json, spec_hash,
                                 bundle_sha256, config_file, created_at, updated_at)
             VALUES ('m1', 'iris', 'RealtimeAPI', ?1, 'complete', '{}', 'h', 'b', 'cortex.yaml', 0, 0)",
            [&admin.id],
        )
        .unwrap();

        migrate(&mut c).unwrap();

        let row = models::get(&c, "m1").unwrap().unwrap();
        assert_eq!(row.deploy_status, crate::store::DeployStatus::Complete);
        assert_eq!(
            (row.access.as_str(), row.default_permission.as_str()),
            ("private", "read")
        );
        assert_eq!(
            (row.deployment, row.save_pending, row.inherits_env),
            (0, false, true)
        );
        assert_eq!(row.team_id, None);
        let jobs: i64 = c
            .query_row("SELECT COUNT(*) FROM tokens WHERE kind = 'job'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(jobs, 0, "job tokens of the old server are gone");
        assert!(
            users::lookup_token(&c, &user_token).unwrap().is_some(),
            "user tokens stay"
        );
        assert_eq!(
            crate::store::model_status::next_deployment(&c, "m1").unwrap(),
            1
        );
    }

    /// The owners of the apis that ran a bundle before uploads were bound to their uploaders
    /// may still use it; the owner of a copy saved without the base's secrets may not.
    #[test]
    fn the_owners_of_stored_apis_become_their_bundles_uploaders() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        for (i, sql) in MIGRATIONS[..6].iter().enumerate() {
            c.execute_batch(sql).unwrap();
            c.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
        }
        let olive = users::create_user(&c, "olive", false).unwrap();
        let sam = users::create_user(&c, "sam", false).unwrap();
        c.execute_batch("INSERT INTO bundles (sha256, size, created_at) VALUES ('b', 1, 0);")
            .unwrap();
        for (id, name, owner, inherits) in
            [("m1", "iris", &olive.id, 1), ("m2", "copy", &sam.id, 0)]
        {
            c.execute(
                "INSERT INTO models (id, name, kind, owner_id, deploy_status, spec_json, spec_hash,
                                     bundle_sha256, config_file, created_at, updated_at, inherits_env)
                 VALUES (?1, ?2, 'RealtimeAPI', ?3, 'complete', '{}', 'h', 'b', 'cortex.yaml', 0, 0, ?4)",
                rusqlite::params![id, name, owner, inherits],
            )
            .unwrap();
        }

        migrate(&mut c).unwrap();

        use crate::store::bundle_uploaders::uploaded_by;
        assert!(uploaded_by(&c, "b", &olive.id).unwrap());
        assert!(!uploaded_by(&c, "b", &sam.id).unwrap());
    }
}
