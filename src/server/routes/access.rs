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
use crate::store::{models, teams, users, StoreError};

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
    let is_admin = caller.user.admin;
    let user_id = caller.user.id.clone();
    let team_name = req.team.clone();
    let (id, name_) = (row.id.clone(), name.clone());
    let info = state
        .store
        .call(move |c| {
            let team = match &team_name {
                Some(t) => {
                    let team = teams::by_name(c, t)?.ok_or_else(|| {
                        StoreError::NotFound(format!(
                            "there is no team named {t:?}; `cortex teams list` shows them"
                        ))
                    })?;
                    let member = teams::memberships(c, &user_id)?
                        .iter()
                        .any(|(id, _)| *id == team.id);
                    if !member && !is_admin {
                        return Err(StoreError::Forbidden(format!(
                            "you are not a member of team {t}; only its members (or an admin) may share an api with it"
                        )));
                    }
                    Some(team)
                }
                None => None,
            };
            let access = access.unwrap_or(current.access);
            let team_id = match access {
                Access::Protected => match (&team, &current.team_id) {
                    (Some(t), _) => Some(t.id.clone()),
                    (None, Some(id)) => Some(id.clone()),
                    (None, None) => {
                        return Err(StoreError::Unprocessable(
                            "protected access needs a team: add --team <team>".to_string(),
                        ))
                    }
                },
                _ => None,
            };
            let permission = permission.unwrap_or(current.default_permission);
            models::set_access(c, &id, access.as_str(), team_id.as_deref(), permission.as_str())?;
            let row = models::get(c, &id)?
                .ok_or_else(|| StoreError::NotFound(format!("api {name_} vanished")))?;
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
            Ok((
                ModelAccess::from(&row),
                AccessInfo {
                    api: row.name.clone(),
                    owner,
                    access: row.access.clone(),
                    team,
                    default_permission: row.default_permission.clone(),
                },
            ))
        })
        .await?;
    if let Some(live) = state.deployments.get(&name) {
        live.set_access(info.0);
    }
    Ok(Json(info.1))
}
