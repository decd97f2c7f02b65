//! `/api/v2/users`: who may use the server (global admins only).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;

use super::parse_json;
use crate::api::{CreateUser, CreatedUser, Membership, MessageResponse, UserInfo};
use crate::server::auth::AuthUser;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::store::{teams, users, UserRow};

/// 403 unless `user` is a global admin.
pub(super) fn require_admin(user: &UserRow, what: &str) -> Result<(), ApiError> {
    if user.admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only an admin may {what}; ask an admin of this server"
        )))
    }
}

/// Users and teams are named like apis (lower case, digits, dashes): 422 otherwise.
pub(super) fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    crate::spec::check_api_name(name).map_err(|e| ApiError::Unprocessable(format!("{field}: {e}")))
}

/// A user with their teams.
pub(super) fn info(
    conn: &rusqlite::Connection,
    u: UserRow,
) -> Result<UserInfo, crate::store::StoreError> {
    let all = teams::list(conn)?;
    let teams = teams::memberships(conn, &u.id)?
        .into_iter()
        .filter_map(|(team_id, team_admin)| {
            let team = all.iter().find(|t| t.id == team_id)?.name.clone();
            Some(Membership { team, team_admin })
        })
        .collect();
    Ok(UserInfo {
        id: u.id,
        username: u.username,
        admin: u.admin,
        teams,
    })
}

pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Vec<UserInfo>>, ApiError> {
    require_admin(&user, "list users")?;
    let out = state
        .store
        .call(|c| {
            users::list_users(c)?
                .into_iter()
                .map(|u| info(c, u))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(Json(out))
}

pub async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    body: Bytes,
) -> Result<Json<CreatedUser>, ApiError> {
    require_admin(&user, "create users")?;
    let req: CreateUser = parse_json(&body)?;
    crate::spec::check_api_name(&req.username).map_err(|e| {
        ApiError::Unprocessable(format!("username: {}", e.replace("api name", "username")))
    })?;
    let created = state
        .store
        .call(move |c| {
            let u = users::create_user(c, &req.username, req.admin)?;
            let token = users::issue_user_token(c, &u.id, "first token", None)?;
            Ok(CreatedUser {
                user: info(c, u)?,
                token,
            })
        })
        .await?;
    Ok(Json(created))
}

pub async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(username): Path<String>,
) -> Result<Json<MessageResponse>, ApiError> {
    require_admin(&user, "delete users")?;
    if username == user.username {
        return Err(ApiError::Conflict(
            "you cannot delete yourself; ask another admin".into(),
        ));
    }
    let heir = user.id.clone();
    let name = username.clone();
    state
        .store
        .call(move |c| {
            let Some(gone) = users::user_by_name(c, &name)? else {
                return Err(crate::store::StoreError::NotFound(format!(
                    "there is no user named {name:?}; `cortex users list` shows them"
                )));
            };
            users::delete_user(c, &gone.id, &heir)
        })
        .await?;
    state.tokens.forget_identities();
    Ok(Json(MessageResponse {
        message: format!(
            "deleted user {username}; their apis now belong to {}",
            user.username
        ),
    }))
}
