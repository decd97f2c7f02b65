//! `/api/v2/tokens`: user tokens. Anyone creates, lists and revokes their own; an admin also
//! other users'. Tokens may expire and may be scoped to one API.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;

use super::parse_json;
use crate::api::{CreateToken, CreatedToken, MessageResponse, TokenInfo};
use crate::clock::now;
use rusqlite::Connection;

use crate::server::access::{self, Caller, Level, ModelAccess};
use crate::server::auth::AuthUser;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::store::users::UserRow;
use crate::store::{models, teams, users, StoreError};

pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let out = state
        .store
        .call(move |c| {
            let whose = (!user.admin).then_some(user.id.as_str());
            let names: Vec<(String, String)> = models::list(c)?
                .into_iter()
                .map(|m| (m.id, m.name))
                .collect();
            Ok(users::list_user_tokens(c, whose)?
                .into_iter()
                .map(|t| TokenInfo {
                    api: t.model_id.as_ref().map(|id| {
                        names
                            .iter()
                            .find(|(mid, _)| mid == id)
                            .map_or_else(|| id.clone(), |(_, name)| name.clone())
                    }),
                    id: t.id,
                    username: t.username,
                    name: t.name,
                    expires_at: t.expires_at,
                    created_at: t.created_at,
                })
                .collect())
        })
        .await?;
    Ok(Json(out))
}

pub async fn create(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    body: Bytes,
) -> Result<Json<CreatedToken>, ApiError> {
    let req: CreateToken = parse_json(&body)?;
    if req.username.as_ref().is_some_and(|u| *u != caller.username) && !caller.admin {
        return Err(ApiError::Forbidden(
            "only an admin may create tokens for another user".into(),
        ));
    }
    if req.expires_in_secs == Some(0) {
        return Err(ApiError::Unprocessable(
            "expires_in_secs: 0 would expire at once; give a positive number of seconds".into(),
        ));
    }
    if let Some(secs) = req
        .expires_in_secs
        .filter(|s| *s > crate::spec::Duration::MAX_SECONDS)
    {
        return Err(ApiError::Unprocessable(format!(
            "expires_in_secs: {secs} is more than 100 years ({}); give fewer seconds, or none for a token that does not expire",
            crate::spec::Duration::MAX_SECONDS
        )));
    }
    let expires_at = match req.expires_in_secs {
        Some(secs) => Some(
            i64::try_from(secs)
                .ok()
                .and_then(|s| now().checked_add(s))
                .ok_or_else(|| {
                    ApiError::Unprocessable(format!("expires_in_secs: {secs} is too large"))
                })?,
        ),
        None => None,
    };
    let created = state
        .store
        .call(move |c| {
            let owner = match &req.username {
                Some(name) => users::user_by_name(c, name)?.ok_or_else(|| {
                    StoreError::NotFound(format!(
                        "there is no user named {name:?}; `cortex users list` shows them"
                    ))
                })?,
                None => caller.clone(),
            };
            let scope = match &req.api {
                Some(api) => Some(scope_for(c, &owner, api)?),
                None => None,
            };
            let name = req.name.clone().unwrap_or_else(|| "cli".to_string());
            let token =
                users::issue_scoped_user_token(c, &owner.id, &name, expires_at, scope.as_deref())?;
            Ok(CreatedToken {
                id: users::hash_token(&token)[..users::TOKEN_ID_LEN].to_string(),
                token,
                expires_at,
            })
        })
        .await?;
    Ok(Json(created))
}

pub async fn revoke(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<MessageResponse>, ApiError> {
    let i = id.clone();
    let revoked = state
        .store
        .call(move |c| {
            let whose = (!caller.admin).then_some(caller.id.as_str());
            users::revoke_user_token_by_id(c, &i, whose)
        })
        .await?;
    if !revoked {
        return Err(ApiError::NotFound(format!(
            "no token of yours has the id {id:?}; `cortex tokens list` shows their ids"
        )));
    }
    state.tokens.forget_identities();
    Ok(Json(MessageResponse {
        message: format!("revoked token {id}"),
    }))
}

/// The model a token of `owner`'s scoped to `api` acts on: one `owner` may use (a token for
/// one they may not would be refused on every route).
fn scope_for(c: &Connection, owner: &UserRow, api: &str) -> Result<String, StoreError> {
    let row = models::get_by_name(c, api)?.ok_or_else(|| {
        StoreError::NotFound(format!(
            "api {api} is not deployed; run `cortex get` to see the deployed apis"
        ))
    })?;
    let caller = Caller {
        user_id: owner.id.clone(),
        admin: owner.admin,
        teams: teams::memberships(c, &owner.id)?,
        scope: None,
    };
    if access::level(&caller, &ModelAccess::from(&row)) < Level::Read {
        return Err(StoreError::Forbidden(format!(
            "user {} may not use api {api}, so a token scoped to it would be refused everywhere; ask its owner for access first (`cortex access {api} ...`)",
            owner.username
        )));
    }
    Ok(row.id)
}
