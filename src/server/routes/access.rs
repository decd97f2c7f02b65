//! `PUT /api/v2/apis/{name}/access` (Owner): who may use an API besides its owner.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;

use super::parse_json;
use crate::api::{AccessInfo, SetAccess};
use crate::server::access::{self, Access, DefaultPermission, Level, ModelAccess};
use crate::server::auth::AuthMember;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::store::teams::TeamRow;
use crate::store::{models, teams, users, ModelRow, StoreError};
use rusqlite::Connection;

pub async fn set_access(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<AccessInfo>, ApiError> {
    let req: SetAccess = parse_json(&body)?;
    let access = match &req.access {
        Some(a) => Some(Access::parse(a).ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "access: {a:?} is not one of private, protected, public"
            ))
        })?),
        None => None,
    };
    let permission = match &req.default_permission {
        Some(p) => Some(DefaultPermission::parse(p).ok_or_else(|| {
            ApiError::Unprocessable(format!("default_permission: {p:?} is not read or write"))
        })?),
        None => None,
    };
    let _changing = state.changes.lock().await;
    let row = super::apis::find(&state, &name).await?;
    // A model's given name finds it too; from here on, the name it is routed by.
    let name = row.name.clone();
    let current = ModelAccess::from(&row);
    if access::level(&caller.caller(), &current) < Level::Owner {
        return Err(ApiError::Forbidden(format!(
            "only the owner of {name} (or an admin, or an admin of its team) may change who can use it"
        )));
    }
    let sharer = (caller.user.id.clone(), caller.user.admin);
    let team_name = req.team;
    let (access, info) = state
        .store
        .call(move |c| {
            let team = match &team_name {
                Some(t) => Some(team_to_share_with(c, t, sharer)?),
                None => None,
            };
            let access = access.unwrap_or(current.access);
            let team_id = team_of(access, team, &current)?;
            let permission = permission.unwrap_or(current.default_permission);
            let id = &current.model_id;
            models::set_access(
                c,
                id,
                access.as_str(),
                team_id.as_deref(),
                permission.as_str(),
            )?;
            let row = models::get(c, id)?
                .ok_or_else(|| StoreError::NotFound(format!("api {} vanished", row.name)))?;
            Ok((ModelAccess::from(&row), access_info(c, &row)?))
        })
        .await?;
    if let Some(live) = state.deployments.get(&name) {
        live.set_access(access);
    }
    Ok(Json(info))
}

/// The team named `name`, which `(user_id, is_admin)` may share an API with: an admin
/// with any, anyone else with their own teams.
fn team_to_share_with(
    c: &Connection,
    name: &str,
    (user_id, is_admin): (String, bool),
) -> Result<TeamRow, StoreError> {
    let team = teams::by_name(c, name)?.ok_or_else(|| {
        StoreError::NotFound(format!(
            "there is no team named {name:?}; `cortex teams list` shows them"
        ))
    })?;
    let member = teams::memberships(c, &user_id)?
        .iter()
        .any(|(id, _)| *id == team.id);
    if !member && !is_admin {
        return Err(StoreError::Forbidden(format!(
            "you are not a member of team {name}; only its members (or an admin) may share an api with it"
        )));
    }
    Ok(team)
}

/// The team an API with `access` is shared with: the one given, else the one it had; only
/// protected access has one, and needs one.
fn team_of(
    access: Access,
    given: Option<TeamRow>,
    current: &ModelAccess,
) -> Result<Option<String>, StoreError> {
    if access != Access::Protected {
        return Ok(None);
    }
    match (given, &current.team_id) {
        (Some(t), _) => Ok(Some(t.id)),
        (None, Some(id)) => Ok(Some(id.clone())),
        (None, None) => Err(StoreError::Unprocessable(
            "protected access needs a team: add --team <team>".to_string(),
        )),
    }
}

/// Who may use the API stored as `row`, by name.
fn access_info(c: &Connection, row: &ModelRow) -> Result<AccessInfo, StoreError> {
    let owner = users::list_users(c)?
        .into_iter()
        .find(|u| u.id == row.owner_id)
        .map_or_else(|| row.owner_id.clone(), |u| u.username);
    let team = match &row.team_id {
        Some(id) => teams::list(c)?
            .into_iter()
            .find(|t| t.id == *id)
            .map(|t| t.name),
        None => None,
    };
    Ok(AccessInfo {
        api: row.name.clone(),
        owner,
        access: row.access.clone(),
        team,
        default_permission: row.default_permission.clone(),
    })
}
