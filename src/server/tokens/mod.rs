//! Tokens: the one place that issues, checks, scopes and revokes them.
//!
//! User tokens belong to a user (optionally with an expiry); job tokens belong to one version
//! of one model (a replica set) and are handed to its replicas as `CORTEX_JOB_TOKEN`. Tokens
//! are opaque random strings; only their SHA-256 is stored (`store/users.rs`). Valid user
//! tokens are remembered in memory (`cache.rs`), so checks do not wait on the database.

mod cache;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::api::RuntimeFile;
use crate::server::access::Caller;
use crate::store::model_status;
use crate::store::{models, teams, users, Store, StoreError, TokenKind, UserRow};
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
    #[error("this route takes a job token (the one a deployment's replicas get as CORTEX_JOB_TOKEN), not a user token")]
    UserTokenOnJobRoute,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who a user token belongs to, with what permissions need: their teams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserRow,
    /// The teams the user belongs to, and whether they are each team's admin.
    pub teams: Vec<(String, bool)>,
    /// The one model a scoped token may act on.
    pub scope: Option<String>,
    /// When the token stops working (Unix seconds); `None`: until it is revoked.
    pub expires_at: Option<i64>,
}

impl Identity {
    /// The caller, as permissions see it.
    pub fn caller(&self) -> Caller {
        Caller {
            user_id: self.user.id.clone(),
            admin: self.user.admin,
            teams: self.teams.clone(),
            scope: self.scope.clone(),
        }
    }
}

/// Who a job token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobIdentity {
    pub model_id: String,
    /// The deployment it was issued for (`None`: not bound to one, e.g. an update token).
    pub deployment: Option<i64>,
    /// The batch job it acts for, when it is a job's token.
    pub job_id: Option<String>,
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
        self.identity(token).await.map(|i| i.user)
    }

    /// The user behind a valid user token, with their teams.
    pub async fn identity(&self, token: &str) -> Result<Identity, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let hash = users::hash_token(token);
        if let Some(identity) = self.users.get(&hash) {
            return Ok(identity);
        }
        let generation = self.users.generation();
        let token = token.to_string();
        let found = self
            .store
            .call(move |conn| {
                let Some((row, user)) = users::lookup_token(conn, &token)? else {
                    return Ok(None);
                };
                let teams = match &user {
                    Some(u) => teams::memberships(conn, &u.id)?,
                    None => Vec::new(),
                };
                Ok(Some((row, user, teams)))
            })
            .await?;
        match found {
            Some((row, Some(user), teams)) if row.kind == TokenKind::User => {
                let identity = Identity {
                    user,
                    teams,
                    scope: row.model_id.clone(),
                    expires_at: row.expires_at,
                };
                self.users
                    .remember(generation, hash, identity.clone(), row.expires_at);
                Ok(identity)
            }
            Some((row, _, _)) if row.kind == TokenKind::Job => Err(TokenError::JobTokenOnUserRoute),
            _ => Err(TokenError::Invalid),
        }
    }

    /// Forgets what is remembered of valid tokens and their teams (after a team changed).
    pub fn forget_identities(&self) {
        self.users.forget_all();
    }

    /// A new deployment of `model_id`: its number and its job token (one transaction).
    pub async fn issue_job_token(&self, model_id: &str) -> Result<(i64, String), StoreError> {
        let model_id = model_id.to_string();
        self.store
            .call(move |conn| {
                let tx = conn.transaction()?;
                let deployment = model_status::next_deployment(&tx, &model_id)?;
                let token = users::issue_job_token(&tx, &model_id, deployment)?;
                tx.commit()?;
                Ok((deployment, token))
            })
            .await
    }

    /// A token for batch job `job_id` of `model_id`, bound to the model's current deployment
    /// (its workers report through the Model Bazaar job routes with it, and use the queue).
    pub async fn issue_batch_job_token(
        &self,
        model_id: &str,
        job_id: &str,
    ) -> Result<String, StoreError> {
        let (model_id, job_id) = (model_id.to_string(), job_id.to_string());
        self.store
            .call(move |conn| {
                let deployment = models::get(conn, &model_id)?.map_or(0, |m| m.deployment);
                users::issue_batch_job_token(conn, &model_id, deployment, &job_id)
            })
            .await
    }

    /// A job token for deployment `deployment` of `model_id`, started again (by a restart of
    /// the server): the deployment goes on, its number is not counted again.
    pub async fn reissue_job_token(
        &self,
        model_id: &str,
        deployment: i64,
    ) -> Result<String, StoreError> {
        let model_id = model_id.to_string();
        self.store
            .call(move |conn| users::issue_job_token(conn, &model_id, deployment))
            .await
    }

    /// The model and deployment a job token belongs to.
    pub async fn job(&self, token: &str) -> Result<JobIdentity, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let token = token.to_string();
        let found = self
            .store
            .call(move |conn| users::lookup_token(conn, &token))
            .await?;
        match found {
            Some((row, _)) if row.kind == TokenKind::Job => match row.model_id {
                Some(model_id) => Ok(JobIdentity {
                    model_id,
                    deployment: row.deployment,
                    job_id: row.job_id,
                }),
                None => Err(TokenError::Invalid),
            },
            Some(_) => Err(TokenError::UserTokenOnJobRoute),
            None => Err(TokenError::Invalid),
        }
    }

    /// Revokes the job tokens of every deployment (at start-up: the replicas they were given to
    /// are gone with the server that started them).
    pub async fn revoke_deployment_tokens(&self) -> Result<(), StoreError> {
        self.store
            .call(|conn| users::revoke_deployment_tokens(conn))
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

    /// Lets a retired deployment's job token work for `grace` more (its replicas have
    /// stopped; their shutdown may still read their status), then not at all.
    pub async fn retire_job_token(&self, token: &str, grace: Duration) -> Result<(), StoreError> {
        let token = token.to_string();
        let at = crate::clock::now() + i64::try_from(grace.as_secs()).unwrap_or(i64::MAX / 2);
        self.store
            .call(move |conn| users::expire_job_token(conn, &token, at))
            .await
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
        let store2 = tokens.store.clone();
        let model = store2
            .call(|c| {
                let u = users::create_user(c, "ada", false)?;
                c.execute(
                    "INSERT INTO bundles (sha256, size, created_at) VALUES ('b', 1, 0)",
                    [],
                )?;
                models::save_spec(c, "m", "RealtimeAPI", &u.id, "{}", "h", "b", "cortex.yaml")
            })
            .await
            .unwrap()
            .0;
        let (first, _) = tokens.issue_job_token(&model.id).await.unwrap();
        let (deployment, job) = tokens.issue_job_token(&model.id).await.unwrap();
        assert_eq!((first, deployment), (1, 2), "deployments are numbered");
        assert_eq!(
            tokens.job(&job).await.unwrap(),
            JobIdentity {
                model_id: model.id.clone(),
                deployment: Some(2),
                job_id: None,
            }
        );
        assert!(matches!(
            tokens.user(&job).await,
            Err(TokenError::JobTokenOnUserRoute)
        ));
        tokens.revoke_job_token(&job).await.unwrap();
        assert!(matches!(tokens.user(&job).await, Err(TokenError::Invalid)));
    }
}
