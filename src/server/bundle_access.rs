//! Who may use a stored bundle (deploy it, or learn that the server has it): an admin, a user
//! who uploaded its bytes, and the owners of an api that runs it with its secrets. To anyone
//! else it is as absent as a bundle nobody uploaded: knowing a project's SHA-256 gives neither
//! its files nor the fact that it exists.
//!
//! A copy saved by a reader (`inherits_env = false`) runs its base's bundle without the `.env`
//! and does not make its owner a user of that bundle.

use super::access::{self, Level, ModelAccess};
use super::error::ApiError;
use super::state::AppState;
use super::tokens::Identity;
use crate::store::{bundle_uploaders, ModelRow};

/// What the store knows about one bundle and one caller.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The bundle is stored (recorded, and its archive is on disk).
    pub stored: bool,
    /// The caller uploaded its bytes.
    pub uploaded_by_caller: bool,
    /// The apis that run it with its secrets.
    pub serving_with_secrets: Vec<ModelRow>,
}

/// Whether `caller` may use the bundle `facts` describe. Pure.
pub fn may_use(caller: &Identity, facts: &Facts) -> bool {
    if !facts.stored {
        return false;
    }
    caller.user.admin
        || facts.uploaded_by_caller
        || facts
            .serving_with_secrets
            .iter()
            .any(|row| access::level(&caller.caller(), &ModelAccess::from(row)) >= Level::Owner)
}

/// Whether `caller` may use the bundle `sha` (false when it is not stored at all).
pub async fn check(state: &AppState, caller: &Identity, sha: &str) -> Result<bool, ApiError> {
    let (bundles, sha, user_id) = (
        state.bundles.clone(),
        sha.to_string(),
        caller.user.id.clone(),
    );
    let facts = state
        .store
        .call(move |c| {
            if !bundles.exists(c, &sha)? {
                return Ok(Facts::default());
            }
            let uploaded_by_caller = bundle_uploaders::uploaded_by(c, &sha, &user_id)?;
            let serving_with_secrets = match uploaded_by_caller {
                true => Vec::new(),
                false => bundle_uploaders::serving_with_secrets(c, &sha)?,
            };
            Ok(Facts {
                stored: true,
                uploaded_by_caller,
                serving_with_secrets,
            })
        })
        .await?;
    Ok(may_use(caller, &facts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeployStatus, UserRow};

    fn caller(id: &str, admin: bool, teams: &[(&str, bool)]) -> Identity {
        Identity {
            user: UserRow {
                id: id.into(),
                username: id.into(),
                admin,
            },
            teams: teams.iter().map(|(t, a)| (t.to_string(), *a)).collect(),
            scope: None,
            expires_at: None,
        }
    }

    fn model(owner: &str, access: &str, team: Option<&str>, default: &str) -> ModelRow {
        ModelRow {
            id: "m".into(),
            name: "api".into(),
            kind: "RealtimeAPI".into(),
            owner_id: owner.into(),
            deploy_status: DeployStatus::Complete,
            spec_json: "{}".into(),
            spec_hash: "h".into(),
            bundle_sha256: "b".into(),
            config_file: "cortex.yaml".into(),
            created_at: 0,
            updated_at: 0,
            serving: None,
            current_served: true,
            access: access.into(),
            default_permission: default.into(),
            team_id: team.map(str::to_string),
            deployment_name: None,
            deploy_params_json: None,
            metadata_json: None,
            deployment: 0,
            base_model_id: None,
            save_pending: false,
            overlay_sha256: None,
            inherits_env: true,
            given_name: None,
            reported_deployment: None,
        }
    }

    #[test]
    fn uploaders_admins_and_owners_may_use_a_bundle_and_no_one_else() {
        let facts = |uploaded: bool, rows: Vec<ModelRow>| Facts {
            stored: true,
            uploaded_by_caller: uploaded,
            serving_with_secrets: rows,
        };
        let public_write = || vec![model("olive", "public", None, "write")];
        let team = || vec![model("olive", "protected", Some("t"), "write")];
        assert!(may_use(&caller("sam", false, &[]), &facts(true, vec![])));
        assert!(may_use(&caller("root", true, &[]), &facts(false, vec![])));
        assert!(may_use(&caller("olive", false, &[]), &facts(false, team())));
        assert!(may_use(
            &caller("tara", false, &[("t", true)]),
            &facts(false, team())
        ));
        // Reading, or submitting jobs, does not hand out the project (or its `.env`).
        assert!(!may_use(&caller("sam", false, &[]), &facts(false, vec![])));
        assert!(!may_use(
            &caller("sam", false, &[]),
            &facts(false, public_write())
        ));
        assert!(!may_use(
            &caller("mia", false, &[("t", false)]),
            &facts(false, team())
        ));
        // Nothing stored: not even an admin may use it.
        assert!(!may_use(&caller("root", true, &[]), &Facts::default()));
    }
}
