//! `/api/v2/teams`: teams and their members. Admins create and delete teams; an admin or the
//! team's own admin manages its members.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;

use super::parse_json;
use super::users::{check_name, require_admin};
use crate::api::{CreateTeam, MessageResponse, SetMember, TeamInfo, TeamMember};
use crate::server::auth::AuthUser;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::store::{teams, users, StoreError, UserRow};

fn team_info(c: &rusqlite::Connection, t: teams::TeamRow) -> Result<TeamInfo, StoreError> {
    let members = teams::members(c, &t.id)?
        .into_iter()
        .map(|m| TeamMember {
            username: m.username,
            team_admin: m.team_admin,
        })
        .collect();
    Ok(TeamInfo {
        id: t.id,
        name: t.name,
        members,
    })
}

fn no_team(name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "there is no team named {name:?}; `cortex teams list` shows them"
    ))
}

pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Vec<TeamInfo>>, ApiError> {
    let out = state
        .store
        .call(move |c| {
            let mine: Vec<String> = teams::memberships(c, &user.id)?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            teams::list(c)?
                .into_iter()
                .filter(|t| user.admin || mine.contains(&t.id))
                .map(|t| team_info(c, t))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(Json(out))
}

pub async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    body: Bytes,
) -> Result<Json<TeamInfo>, ApiError> {
    require_admin(&user, "create teams")?;
    let req: CreateTeam = parse_json(&body)?;
    check_name("team name", &req.name)?;
    let team = state
        .store
        .call(move |c| {
            let t = teams::create(c, &req.name)?;
            team_info(c, t)
        })
        .await?;
    Ok(Json(team))
}

pub async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<MessageResponse>, ApiError> {
    require_admin(&user, "delete teams")?;
    let n = name.clone();
    state
        .store
        .call(move |c| {
            let team = teams::by_name(c, &n)?.ok_or_else(|| no_team(&n))?;
            teams::delete(c, &team.id).map(|_| ())
        })
        .await?;
    state.tokens.forget_identities();
    state.deployments.refresh_access().await?;
    Ok(Json(MessageResponse {
        message: format!("deleted team {name}; its protected apis are private now"),
    }))
}

/// The team and user of a membership route, when the caller may manage that team.
fn membership(
    c: &rusqlite::Connection,
    caller: &UserRow,
    team: &str,
    username: &str,
) -> Result<(teams::TeamRow, UserRow), StoreError> {
    let team = teams::by_name(c, team)?.ok_or_else(|| no_team(team))?;
    let manages = caller.admin
        || teams::memberships(c, &caller.id)?
            .iter()
            .any(|(id, admin)| *id == team.id && *admin);
    if !manages {
        return Err(StoreError::Forbidden(format!(
            "only an admin or an admin of team {} may change its members",
            team.name
        )));
    }
    let user = users::user_by_name(c, username)?.ok_or_else(|| {
        StoreError::NotFound(format!(
            "there is no user named {username:?}; `cortex users list` shows them"
        ))
    })?;
    Ok((team, user))
}

pub async fn set_member(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path((team, username)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<TeamInfo>, ApiError> {
    let req: SetMember = if body.iter().all(u8::is_ascii_whitespace) {
        SetMember::default()
    } else {
        parse_json(&body)?
    };
    let info = state
        .store
        .call(move |c| {
            let (team, user) = membership(c, &caller, &team, &username)?;
            teams::set_member(c, &team.id, &user.id, req.team_admin)?;
            team_info(c, team)
        })
        .await?;
    state.tokens.forget_identities();
    Ok(Json(info))
}

pub async fn remove_member(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path((team, username)): Path<(String, String)>,
) -> Result<Json<TeamInfo>, ApiError> {
    let info = state
        .store
        .call(move |c| {
            let (team, user) = membership(c, &caller, &team, &username)?;
            if !teams::remove_member(c, &team.id, &user.id)? {
                return Err(StoreError::NotFound(format!(
                    "{} is not a member of team {}",
                    user.username, team.name
                )));
            }
            team_info(c, team)
        })
        .await?;
    state.tokens.forget_identities();
    Ok(Json(info))
}
