//! Users, teams, tokens and model access: the control API an operator drives with
//! `cortex users`, `cortex teams`, `cortex tokens` and `cortex access`.

use serde::{Deserialize, Serialize};

/// A team a user belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub team: String,
    pub team_admin: bool,
}

/// `GET /api/v2/users` (admin): one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserInfo {
    pub id: String,
    pub username: String,
    /// A global admin is Owner of every model.
    pub admin: bool,
    pub teams: Vec<Membership>,
}

/// `POST /api/v2/users` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    #[serde(default)]
    pub admin: bool,
}

/// The answer to `POST /api/v2/users`: the user and a first token for them (shown once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatedUser {
    pub user: UserInfo,
    pub token: String,
}

/// A member of a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamMember {
    pub username: String,
    pub team_admin: bool,
}

/// `GET /api/v2/teams`: one team (admins see every team, others their own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamInfo {
    pub id: String,
    pub name: String,
    pub members: Vec<TeamMember>,
}

/// `POST /api/v2/teams` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    pub name: String,
}

/// `PUT /api/v2/teams/{team}/members/{username}` (admin or the team's admin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMember {
    /// A team admin manages the team's members and is Owner of its protected models.
    #[serde(default)]
    pub team_admin: bool,
}

/// `GET /api/v2/tokens`: a user token, never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenInfo {
    /// What `cortex tokens revoke` takes.
    pub id: String,
    pub username: String,
    pub name: String,
    /// The one API the token may act on, when it is scoped.
    pub api: Option<String>,
    /// Unix seconds; `None`: it does not expire.
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

/// `POST /api/v2/tokens`: a new user token (for the caller; an admin may name another user).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Seconds until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Scope it to this API: it acts on no other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

/// The answer to `POST /api/v2/tokens`: the token itself, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatedToken {
    pub id: String,
    pub token: String,
    pub expires_at: Option<i64>,
}

/// `PUT /api/v2/apis/{name}/access` (Owner): who may use an API besides its owner. Fields
/// left out keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAccess {
    /// `private`, `protected` (needs a team) or `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// `read` or `write`: what team members (protected) or everyone (public) may do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_permission: Option<String>,
}

/// An API's access, as `PUT /api/v2/apis/{name}/access` leaves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessInfo {
    pub api: String,
    pub owner: String,
    pub access: String,
    pub team: Option<String>,
    pub default_permission: String,
}
