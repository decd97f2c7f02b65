//! Who may do what with a model: permission levels resolved from the caller (admin, teams) and
//! the model (owner, access, default permission, team), as Model Bazaar does. Pure: the caller
//! loads the rows.

/// Permission levels, ordered: `None < Read < Write < Owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    None,
    Read,
    Write,
    Owner,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Read => "read",
            Level::Write => "write",
            Level::Owner => "owner",
        }
    }
}

/// Who may see a model beyond its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Its owner (and global admins) only.
    Private,
    /// The members of its team.
    Protected,
    /// Everyone with a token.
    Public,
}

impl Access {
    pub const ALL: [Access; 3] = [Access::Private, Access::Protected, Access::Public];

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Private => "private",
            Access::Protected => "protected",
            Access::Public => "public",
        }
    }

    pub fn parse(s: &str) -> Option<Access> {
        Access::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// What a team member (protected) or anyone (public) may do with a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultPermission {
    Read,
    Write,
}

impl DefaultPermission {
    pub const ALL: [DefaultPermission; 2] = [DefaultPermission::Read, DefaultPermission::Write];

    pub fn as_str(self) -> &'static str {
        match self {
            DefaultPermission::Read => "read",
            DefaultPermission::Write => "write",
        }
    }

    pub fn parse(s: &str) -> Option<DefaultPermission> {
        DefaultPermission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    fn level(self) -> Level {
        match self {
            DefaultPermission::Read => Level::Read,
            DefaultPermission::Write => Level::Write,
        }
    }
}

/// The caller, as far as permissions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    /// A global admin is Owner of every model.
    pub admin: bool,
    /// The teams the caller belongs to, and whether they are that team's admin.
    pub teams: Vec<(String, bool)>,
    /// A token scoped to one model acts on that model alone.
    pub scope: Option<String>,
}

/// A model, as far as permissions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelAccess {
    pub model_id: String,
    pub owner_id: String,
    pub access: Access,
    pub default_permission: DefaultPermission,
    /// The team of a protected model.
    pub team_id: Option<String>,
}

impl From<&crate::store::ModelRow> for ModelAccess {
    fn from(row: &crate::store::ModelRow) -> ModelAccess {
        ModelAccess {
            model_id: row.id.clone(),
            owner_id: row.owner_id.clone(),
            access: Access::parse(&row.access).unwrap_or(Access::Private),
            default_permission: DefaultPermission::parse(&row.default_permission)
                .unwrap_or(DefaultPermission::Read),
            team_id: row.team_id.clone(),
        }
    }
}

/// Why a token scoped to another model than `model_id` has no access to it, when it is: the
/// refusal says so, rather than that its user lacks access.
pub fn out_of_scope(caller: &Caller, model_id: &str, api: &str) -> Option<String> {
    let scope = caller.scope.as_ref().filter(|s| *s != model_id)?;
    Some(format!(
        "this token is scoped to another api (model {scope}): it works on that api only, not on {api}; use an unscoped token, or one made with `cortex tokens create --api {api}`"
    ))
}

/// The caller's level on the model: a global admin or the owner is Owner; a public model gives
/// everyone its default permission; a protected model gives its team's admins Owner and its
/// members the default permission; anything else is None. A token scoped to another model
/// has None.
pub fn level(caller: &Caller, model: &ModelAccess) -> Level {
    if caller
        .scope
        .as_ref()
        .is_some_and(|scope| *scope != model.model_id)
    {
        return Level::None;
    }
    if caller.admin || caller.user_id == model.owner_id {
        return Level::Owner;
    }
    match (model.access, &model.team_id) {
        (Access::Public, _) => model.default_permission.level(),
        (Access::Protected, Some(team)) => match caller.teams.iter().find(|(id, _)| id == team) {
            Some((_, true)) => Level::Owner,
            Some((_, false)) => model.default_permission.level(),
            None => Level::None,
        },
        _ => Level::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(id: &str, admin: bool, teams: &[(&str, bool)]) -> Caller {
        Caller {
            user_id: id.to_string(),
            admin,
            teams: teams.iter().map(|(t, a)| (t.to_string(), *a)).collect(),
            scope: None,
        }
    }

    fn model(access: Access, default: DefaultPermission, team: Option<&str>) -> ModelAccess {
        ModelAccess {
            model_id: "m1".to_string(),
            owner_id: "owner".to_string(),
            access,
            default_permission: default,
            team_id: team.map(str::to_string),
        }
    }

    #[test]
    fn levels_follow_model_bazaar_rules() {
        use Access::*;
        use DefaultPermission::{Read as R, Write as W};
        let owner = caller("owner", false, &[]);
        let admin = caller("root", true, &[]);
        let stranger = caller("x", false, &[]);
        let member = caller("m", false, &[("t1", false)]);
        let team_admin = caller("ta", false, &[("t1", true)]);
        let other_team = caller("o", false, &[("t2", true)]);
        let cases = [
            (&owner, model(Private, R, None), Level::Owner),
            (&admin, model(Private, R, None), Level::Owner),
            (&stranger, model(Private, W, None), Level::None),
            (&member, model(Private, W, Some("t1")), Level::None),
            (&stranger, model(Public, R, None), Level::Read),
            (&stranger, model(Public, W, None), Level::Write),
            (&member, model(Protected, R, Some("t1")), Level::Read),
            (&member, model(Protected, W, Some("t1")), Level::Write),
            (&team_admin, model(Protected, R, Some("t1")), Level::Owner),
            (&other_team, model(Protected, W, Some("t1")), Level::None),
            (&stranger, model(Protected, W, Some("t1")), Level::None),
            (&member, model(Protected, W, None), Level::None),
        ];
        for (who, m, want) in cases {
            assert_eq!(level(who, &m), want, "{who:?} on {m:?}");
        }
        let mut scoped = admin.clone();
        scoped.scope = Some("m2".into());
        assert_eq!(
            level(&scoped, &model(Public, W, None)),
            Level::None,
            "scoped elsewhere"
        );
        scoped.scope = Some("m1".into());
        assert_eq!(level(&scoped, &model(Private, R, None)), Level::Owner);
        assert!(Level::None < Level::Read && Level::Read < Level::Write);
        assert!(Level::Write < Level::Owner);
    }

    #[test]
    fn names_round_trip() {
        for a in Access::ALL {
            assert_eq!(Access::parse(a.as_str()), Some(a));
        }
        for p in DefaultPermission::ALL {
            assert_eq!(DefaultPermission::parse(p.as_str()), Some(p));
        }
        assert_eq!(Access::parse("secret"), None);
    }
}
