//! Users and tokens. Tokens are opaque random strings; only their SHA-256 is stored.

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::clock::now;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub admin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    User,
    Job,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::User => "user",
            TokenKind::Job => "job",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub kind: TokenKind,
    pub user_id: Option<String>,
    pub model_id: Option<String>,
    /// Job tokens: the deployment of the model they were issued for.
    pub deployment: Option<i64>,
    /// Batch job tokens: the one job they act for.
    pub job_id: Option<String>,
    pub expires_at: Option<i64>,
}

/// Hex SHA-256 of a token, the only form in which tokens are stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: 32 bytes of OS randomness, hex, with a prefix that says what it is.
pub fn new_token(kind: TokenKind) -> String {
    let bytes: [u8; 32] = rand::random();
    let prefix = match kind {
        TokenKind::User => "ctx_u_",
        TokenKind::Job => "ctx_j_",
    };
    format!("{prefix}{}", hex::encode(bytes))
}

pub fn create_user(conn: &Connection, username: &str, admin: bool) -> Result<UserRow, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    let inserted = conn.execute(
        "INSERT INTO users (id, username, admin, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(username) DO NOTHING",
        params![id, username, admin, now()],
    )?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "a user named {username:?} already exists"
        )));
    }
    Ok(UserRow {
        id,
        username: username.to_string(),
        admin,
    })
}

pub fn count_users(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
}

pub fn user_by_name(conn: &Connection, username: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id, username, admin FROM users WHERE username = ?1",
            [username],
            |r| {
                Ok(UserRow {
                    id: r.get(0)?,
                    username: r.get(1)?,
                    admin: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Stores a new user token for `user_id` and returns its plain text (shown once, never stored).
pub fn issue_user_token(
    conn: &Connection,
    user_id: &str,
    name: &str,
    expires_at: Option<i64>,
) -> Result<String, StoreError> {
    issue_scoped_user_token(conn, user_id, name, expires_at, None)
}

/// A user token that, with `model_id`, acts on that model alone.
pub fn issue_scoped_user_token(
    conn: &Connection,
    user_id: &str,
    name: &str,
    expires_at: Option<i64>,
    model_id: Option<&str>,
) -> Result<String, StoreError> {
    let token = new_token(TokenKind::User);
    conn.execute(
        "INSERT INTO tokens (hash, kind, user_id, name, expires_at, model_id, created_at)
         VALUES (?1, 'user', ?2, ?3, ?4, ?5, ?6)",
        params![
            hash_token(&token),
            user_id,
            name,
            expires_at,
            model_id,
            now()
        ],
    )?;
    Ok(token)
}

/// How a token is listed: never the token itself, an id made of its hash's first digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub username: String,
    pub name: String,
    pub model_id: Option<String>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

/// How many hex digits of a token's hash make its id.
pub const TOKEN_ID_LEN: usize = 16;

/// The user tokens of `user_id` (every user's with `None`), newest first.
pub fn list_user_tokens(
    conn: &Connection,
    user_id: Option<&str>,
) -> Result<Vec<TokenInfo>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT substr(t.hash, 1, ?1), u.username, t.name, t.model_id, t.expires_at, t.created_at
         FROM tokens t JOIN users u ON u.id = t.user_id
         WHERE t.kind = 'user' AND (?2 IS NULL OR t.user_id = ?2)
         ORDER BY t.created_at DESC, t.hash",
    )?;
    let rows = stmt.query_map(params![TOKEN_ID_LEN as i64, user_id], |r| {
        Ok(TokenInfo {
            id: r.get(0)?,
            username: r.get(1)?,
            name: r.get(2)?,
            model_id: r.get(3)?,
            expires_at: r.get(4)?,
            created_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes the user token with this id (of `user_id` only, unless `None`); false when none.
pub fn revoke_user_token_by_id(
    conn: &Connection,
    id: &str,
    user_id: Option<&str>,
) -> Result<bool, StoreError> {
    if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    let n = conn.execute(
        "DELETE FROM tokens WHERE kind = 'user' AND substr(hash, 1, ?1) = ?2
         AND (?3 IS NULL OR user_id = ?3)",
        params![TOKEN_ID_LEN as i64, id.to_ascii_lowercase(), user_id],
    )?;
    Ok(n > 0)
}

/// Every user, by name.
pub fn list_users(conn: &Connection) -> Result<Vec<UserRow>, StoreError> {
    let mut stmt = conn.prepare("SELECT id, username, admin FROM users ORDER BY username")?;
    let rows = stmt.query_map([], |r| {
        Ok(UserRow {
            id: r.get(0)?,
            username: r.get(1)?,
            admin: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes a user; their models go to `heir` (their tokens and memberships go with them).
pub fn delete_user(conn: &mut Connection, user_id: &str, heir: &str) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE models SET owner_id = ?2 WHERE owner_id = ?1",
        params![user_id, heir],
    )?;
    tx.execute("DELETE FROM users WHERE id = ?1", [user_id])?;
    tx.commit()?;
    Ok(())
}

/// Stores a new job token scoped to `model_id`'s deployment `deployment` and returns its plain
/// text.
pub fn issue_job_token(
    conn: &Connection,
    model_id: &str,
    deployment: i64,
) -> Result<String, StoreError> {
    let token = new_token(TokenKind::Job);
    conn.execute(
        "INSERT INTO tokens (hash, kind, model_id, deployment, created_at)
         VALUES (?1, 'job', ?2, ?3, ?4)",
        params![hash_token(&token), model_id, deployment, now()],
    )?;
    Ok(token)
}

/// Stores a new job token for batch job `job_id` of `model_id` (deployment `deployment`) and
/// returns its plain text: what the job's workers use on the queue and job routes.
pub fn issue_batch_job_token(
    conn: &Connection,
    model_id: &str,
    deployment: i64,
    job_id: &str,
) -> Result<String, StoreError> {
    let token = new_token(TokenKind::Job);
    conn.execute(
        "INSERT INTO tokens (hash, kind, model_id, deployment, job_id, created_at)
         VALUES (?1, 'job', ?2, ?3, ?4, ?5)",
        params![hash_token(&token), model_id, deployment, job_id, now()],
    )?;
    Ok(token)
}

/// Revokes one job token (user tokens are remembered by the server's token cache: revoking
/// one needs the cache told too).
pub fn revoke_job_token(conn: &Connection, token: &str) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM tokens WHERE kind = 'job' AND hash = ?1",
        [hash_token(token)],
    )?;
    Ok(())
}

/// Lets a job token work until `at` only (Unix seconds): a retired deployment's, so its
/// replicas' shutdown can still read their status.
pub fn expire_job_token(conn: &Connection, token: &str, at: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE tokens SET expires_at = ?2
         WHERE kind = 'job' AND hash = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        params![hash_token(token), at],
    )?;
    Ok(())
}

/// Stores a token that may complete a saved model's files (a job token of that model bound to
/// no deployment) until `expires_at`.
pub fn issue_update_token(
    conn: &Connection,
    model_id: &str,
    expires_at: i64,
) -> Result<String, StoreError> {
    let token = new_token(TokenKind::Job);
    conn.execute(
        "INSERT INTO tokens (hash, kind, model_id, name, expires_at, created_at)
         VALUES (?1, 'job', ?2, 'update', ?3, ?4)",
        params![hash_token(&token), model_id, expires_at, now()],
    )?;
    Ok(token)
}

/// Revokes the job tokens of every deployment (update tokens, bound to no deployment, stay).
pub fn revoke_deployment_tokens(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM tokens WHERE kind = 'job' AND deployment IS NOT NULL",
        [],
    )?;
    Ok(())
}

/// Revokes one user token; false when there was none. The server's memory of valid user
/// tokens must be cleared too (`server::tokens` does).
pub fn revoke_user_token(conn: &Connection, token: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "DELETE FROM tokens WHERE kind = 'user' AND hash = ?1",
        [hash_token(token)],
    )?;
    Ok(n > 0)
}

/// The token's row and, for user tokens, its user; `None` when unknown or expired.
pub fn lookup_token(
    conn: &Connection,
    token: &str,
) -> Result<Option<(TokenRow, Option<UserRow>)>, StoreError> {
    let row = conn
        .query_row(
            "SELECT t.kind, t.user_id, t.model_id, t.expires_at, u.username, u.admin, t.deployment,
                    t.job_id
             FROM tokens t LEFT JOIN users u ON u.id = t.user_id
             WHERE t.hash = ?1",
            [hash_token(token)],
            |r| {
                let kind: String = r.get(0)?;
                let user_id: Option<String> = r.get(1)?;
                let username: Option<String> = r.get(4)?;
                let admin: Option<bool> = r.get(5)?;
                let user = match (&user_id, username) {
                    (Some(id), Some(username)) => Some(UserRow {
                        id: id.clone(),
                        username,
                        admin: admin.unwrap_or(false),
                    }),
                    _ => None,
                };
                Ok((
                    TokenRow {
                        kind: if kind == TokenKind::Job.as_str() {
                            TokenKind::Job
                        } else {
                            TokenKind::User
                        },
                        user_id,
                        model_id: r.get(2)?,
                        deployment: r.get(6)?,
                        job_id: r.get(7)?,
                        expires_at: r.get(3)?,
                    },
                    user,
                ))
            },
        )
        .optional()?;
    Ok(row.filter(|(t, _)| t.expires_at.is_none_or(|exp| exp > now())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::migrations::migrate;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        c
    }

    #[test]
    fn tokens_are_stored_hashed_and_found_again() {
        let c = db();
        let u = create_user(&c, "admin", true).unwrap();
        let t = issue_user_token(&c, &u.id, "cli", None).unwrap();
        let stored: String = c
            .query_row("SELECT hash FROM tokens", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, t);
        assert_eq!(stored, hash_token(&t));
        let (row, user) = lookup_token(&c, &t).unwrap().unwrap();
        assert_eq!(row.kind, TokenKind::User);
        assert_eq!(user.unwrap().username, "admin");
        assert!(lookup_token(&c, "ctx_u_wrong").unwrap().is_none());
    }

    #[test]
    fn job_tokens_are_revoked_one_by_one_or_all_at_start_up() {
        let c = db();
        let (old, new) = (
            issue_job_token(&c, "m1", 1).unwrap(),
            issue_job_token(&c, "m1", 2).unwrap(),
        );
        let other_model = issue_job_token(&c, "m2", 1).unwrap();
        revoke_job_token(&c, &old).unwrap();
        assert!(lookup_token(&c, &old).unwrap().is_none());
        let (row, _) = lookup_token(&c, &new).unwrap().unwrap();
        assert_eq!(
            (row.model_id.as_deref(), row.deployment),
            (Some("m1"), Some(2))
        );
        assert!(lookup_token(&c, &other_model).unwrap().is_some());
        let user = create_user(&c, "ada", false).unwrap();
        let user_token = issue_user_token(&c, &user.id, "t", None).unwrap();
        revoke_deployment_tokens(&c).unwrap();
        assert!(lookup_token(&c, &new).unwrap().is_none());
        assert!(lookup_token(&c, &other_model).unwrap().is_none());
        assert!(lookup_token(&c, &user_token).unwrap().is_some());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let c = db();
        let u = create_user(&c, "a", false).unwrap();
        let t = issue_user_token(&c, &u.id, "old", Some(now() - 1)).unwrap();
        assert!(lookup_token(&c, &t).unwrap().is_none());
    }

    #[test]
    fn duplicate_usernames_conflict() {
        let c = db();
        create_user(&c, "a", false).unwrap();
        assert!(matches!(
            create_user(&c, "a", false),
            Err(StoreError::Conflict(_))
        ));
    }
}
