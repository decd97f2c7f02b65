//! The unprivileged user replicas run as when the server runs as root, and whether that user
//! can reach a path (every directory on the way must let it pass).

use std::ffi::{CStr, CString};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// An OS user replicas run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl ReplicaUser {
    /// Looks up `name` (a user name or a numeric uid) in the user database. Root is refused:
    /// replicas never run with privileges.
    pub fn lookup(name: &str) -> Result<ReplicaUser, String> {
        let found = match name.parse::<u32>() {
            Ok(uid) => passwd(Lookup::Uid(uid)),
            Err(_) => passwd(Lookup::Name(name)),
        };
        let user = found.ok_or_else(|| {
            format!("--replica-user {name}: no such user; give an existing unprivileged user (for example nobody)")
        })?;
        if user.uid == 0 || user.gid == 0 {
            return Err(format!(
                "--replica-user {name} is root (or in group root); replicas never run with privileges: give an unprivileged user such as nobody"
            ));
        }
        Ok(user)
    }
}

impl ReplicaUser {
    /// The name of `uid` (root included), if the user database has it.
    pub fn lookup_any(uid: u32) -> Option<String> {
        passwd(Lookup::Uid(uid)).map(|u| u.name)
    }
}

enum Lookup<'a> {
    Name(&'a str),
    Uid(u32),
}

fn passwd(by: Lookup<'_>) -> Option<ReplicaUser> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid out-parameter for getpw*_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = match by {
        Lookup::Name(name) => {
            let name = CString::new(name).ok()?;
            // SAFETY: every pointer is valid for the call; buf outlives the use of pw's strings.
            unsafe {
                libc::getpwnam_r(
                    name.as_ptr(),
                    &mut pw,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut result,
                )
            }
        }
        // SAFETY: as above.
        Lookup::Uid(uid) => unsafe {
            libc::getpwuid_r(
                uid,
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        },
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: getpw*_r succeeded, so pw_name points at a NUL-terminated string inside buf.
    let name = unsafe { CStr::from_ptr(pw.pw_name) }
        .to_string_lossy()
        .into_owned();
    Some(ReplicaUser {
        name,
        uid: pw.pw_uid,
        gid: pw.pw_gid,
    })
}

/// What a user needs of the last component of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// To pass through it (a directory).
    Search,
    /// To run it (a program).
    Execute,
}

/// Whether `user` can reach `path` (following links) and do `need` with it: every directory
/// on the way must let it search, by the permission bits of owner, group or others.
pub fn can_reach(path: &Path, user: &ReplicaUser, need: Need) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    let allows = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            let bit = if m.uid() == user.uid {
                0o100
            } else if m.gid() == user.gid {
                0o010
            } else {
                0o001
            };
            m.mode() & bit != 0
        })
    };
    let dirs_ok = path.ancestors().skip(1).all(allows);
    dirs_ok
        && match need {
            Need::Search => path.is_dir() && allows(&path),
            Need::Execute => path.is_file() && allows(&path),
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn nobody() -> ReplicaUser {
        ReplicaUser {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
        }
    }

    #[test]
    fn root_is_never_a_replica_user() {
        let err = ReplicaUser::lookup("root").unwrap_err();
        assert!(err.contains("never run with privileges"), "{err}");
        assert!(ReplicaUser::lookup("0").is_err());
        assert!(ReplicaUser::lookup("no-such-user-here")
            .unwrap_err()
            .contains("no such user"));
    }

    #[test]
    fn a_directory_closed_to_others_on_the_way_makes_a_path_unreachable() {
        let top = tempfile::tempdir().unwrap();
        let inner = top.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        for p in [top.path(), &top.path().join("a"), &inner] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        let user = nobody();
        // /tmp lets everyone through; the temp dir, a and b do too.
        assert!(can_reach(&inner, &user, Need::Search));
        std::fs::set_permissions(top.path().join("a"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        assert!(!can_reach(&inner, &user, Need::Search));
        assert!(!can_reach(&top.path().join("missing"), &user, Need::Search));
    }
}
