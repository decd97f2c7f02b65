//! Tokens: the one place that issues, checks, scopes and revokes them.
//!
//! User tokens belong to a user (optionally with an expiry); job tokens belong to one version
//! of one model (a replica set) and are handed to its replicas as `CORTEX_JOB_TOKEN`. Tokens
//! are opaque random strings; only their SHA-256 is stored (`store/users.rs`). Valid user
//! tokens are remembered in memory (`cache.rs`), so checks do not wait on the database.

mod cache;

use std::path::Path;

use anyhow::Context;

use crate::api::RuntimeFile;
use crate::store::{users, Store, StoreError, TokenKind, UserRow};
use cache::TokenCache;

/// The longest token worth looking up; anything longer is not one of ours.
const MAX_TOKEN_LEN: usize = 512;

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not valid (unknown, revoked or expired)")]
    Invalid,
    #[error("a job token cannot be used on this route; use a user token")]
    JobTokenOnUserRoute,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Issues, checks and revokes tokens.
pub struct Tokens {
    store: Store,
    users: TokenCache,
}

impl Tokens {
    pub fn new(store: Store) -> Tokens {
        Tokens {
            store,
            users: TokenCache::default(),
        }
    }

    /// The user behind a valid user token.
    pub async fn user(&self, token: &str) -> Result<UserRow, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let hash = users::hash_token(token);
        if let Some(user) = self.users.get(&hash) {
            return Ok(user);
        }
        let generation = self.users.generation();
        let token = token.to_string();
        let found = self
            .store
            .call(move |conn| users::lookup_token(conn, &token))
            .await?;
        match found {
            Some((row, Some(user))) if row.kind == TokenKind::User => {
                self.users
                    .remember(generation, hash, user.clone(), row.expires_at);
                Ok(user)
            }
            Some((row, _)) if row.kind == TokenKind::Job => Err(TokenError::JobTokenOnUserRoute),
            _ => Err(TokenError::Invalid),
        }
    }

    /// A new job token for a version of `model_id`.
    pub async fn issue_job_token(&self, model_id: &str) -> Result<String, StoreError> {
        let model_id = model_id.to_string();
        self.store
            .call(move |conn| users::issue_job_token(conn, &model_id))
            .await
    }

    /// Revokes every job token of `model_id` but `keep` (the one its newest version holds).
    pub async fn keep_only_job_token(&self, model_id: &str, keep: &str) -> Result<(), StoreError> {
        let (model_id, keep) = (model_id.to_string(), keep.to_string());
        self.store
            .call(move |conn| users::revoke_job_tokens_except(conn, &model_id, &keep))
            .await
    }

    /// Revokes one user token; it stops working at once (the memory of valid tokens is
    /// cleared too). Returns false when no such user token exists.
    pub async fn revoke_user_token(&self, token: &str) -> Result<bool, StoreError> {
        let token = token.to_string();
        let revoked = self
            .store
            .call(move |conn| users::revoke_user_token(conn, &token))
            .await?;
        self.users.forget_all();
        Ok(revoked)
    }

    /// Revokes one job token.
    pub async fn revoke_job_token(&self, token: &str) -> Result<(), StoreError> {
        let token = token.to_string();
        self.store
            .call(move |conn| users::revoke_job_token(conn, &token))
            .await
    }
}

/// Creates the admin user on first start, and (re)writes `admin.token` (mode 0600, atomically)
/// when the file is missing or does not hold a valid admin token (empty after a full disk,
/// edited by hand): only the token's hash is stored, so a lost token means a new one.
pub async fn ensure_admin_token(store: &Store, data_dir: &Path) -> anyhow::Result<()> {
    let token_path = data_dir.join(RuntimeFile::ADMIN_TOKEN);
    let existing = std::fs::read_to_string(&token_path).ok();
    let token = store
        .call(move |conn| {
            if let Some(token) = existing.as_deref().map(str::trim) {
                let valid = users::lookup_token(conn, token)?.is_some_and(|(row, user)| {
                    row.kind == TokenKind::User && user.is_some_and(|u| u.admin)
                });
                if valid {
                    return Ok(None);
                }
            }
            let user = match users::user_by_name(conn, "admin")? {
                Some(u) => u,
                None => users::create_user(conn, "admin", true)?,
            };
            users::issue_user_token(conn, &user.id, "admin.token", None).map(Some)
        })
        .await?;
    if let Some(token) = token {
        crate::atomic_file::write_private(&token_path, token.as_bytes())
            .with_context(|| format!("cannot write {}", token_path.display()))?;
        eprintln!("admin token written to {}", token_path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_revoked_user_token_stops_working_although_it_was_remembered() {
        let store = Store::open_in_memory().unwrap();
        let token = store
            .call(|c| {
                let u = users::create_user(c, "ada", false)?;
                users::issue_user_token(c, &u.id, "t", None)
            })
            .await
            .unwrap();
        let tokens = Tokens::new(store);
        assert_eq!(tokens.user(&token).await.unwrap().username, "ada");
        assert!(tokens.revoke_user_token(&token).await.unwrap());
        assert!(matches!(
            tokens.user(&token).await,
            Err(TokenError::Invalid)
        ));
        assert!(!tokens.revoke_user_token(&token).await.unwrap());
    }

    #[tokio::test]
    async fn a_job_token_is_refused_as_a_user_token() {
        let store = Store::open_in_memory().unwrap();
        let tokens = Tokens::new(store);
        let job = tokens.issue_job_token("m1").await.unwrap();
        assert!(matches!(
            tokens.user(&job).await,
            Err(TokenError::JobTokenOnUserRoute)
        ));
        tokens.revoke_job_token(&job).await.unwrap();
        assert!(matches!(tokens.user(&job).await, Err(TokenError::Invalid)));
    }
}
