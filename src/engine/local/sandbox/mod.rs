//! What a local replica may reach: an unprivileged user when the server is root, no new
//! privileges, a Landlock ruleset that hides the server's directories (but for the replica's
//! own project, shim, virtualenvs and a private scratch directory), signals and abstract unix
//! sockets scoped to the replica, and only the harmless part of the server's environment.
//!
//! `Sandbox::prepare` makes a run's [`Jail`] in the server (scratch directory, ruleset); the
//! child enters it between fork and exec with async-signal-safe calls only.

mod ruleset;
mod shared_dirs;
pub mod user;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use ruleset::kernel_abi;
pub use shared_dirs::SharedDirs;
pub use user::{can_reach, Need, ReplicaUser};

use crate::engine::ReplicaPlan;

/// How tightly replicas are held (`cortex server --sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// The server's directories are hidden; the rest is as the OS lets the replica's user.
    #[default]
    Standard,
    /// Only system paths, the replica's own files and `--replica-path` directories.
    Strict,
    /// No Landlock ruleset (the user, no-new-privs and the environment still apply).
    Off,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Standard => "standard",
            SandboxMode::Strict => "strict",
            SandboxMode::Off => "off",
        }
    }
}

impl FromStr for SandboxMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "standard" => Ok(SandboxMode::Standard),
            "strict" => Ok(SandboxMode::Strict),
            "off" => Ok(SandboxMode::Off),
            other => Err(format!(
                "unknown sandbox `{other}`: use standard, strict or off"
            )),
        }
    }
}

/// A directory every replica may reach (`--replica-path DIR[:rw]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub path: PathBuf,
    pub write: bool,
}

impl FromStr for Grant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (path, write) = match s.rsplit_once(':') {
            Some((p, "rw")) => (p, true),
            Some((p, "ro")) => (p, false),
            _ => (s, false),
        };
        if !path.starts_with('/') {
            return Err(format!(
                "--replica-path {s}: give an absolute directory, optionally followed by :rw"
            ));
        }
        Ok(Grant {
            path: PathBuf::from(path),
            write,
        })
    }
}

/// System paths a strict replica may read (and `/dev`, which it may write).
const STRICT_READ: &[&str] = &[
    "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/opt", "/proc", "/sys",
];

/// What the engine was told about isolation by the server.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    pub mode: SandboxMode,
    /// The server's own directories (the data dir, the replica tree): hidden from replicas
    /// but for what a plan grants.
    pub hidden: Vec<PathBuf>,
    /// Directories every replica may reach besides its own (strict mode's `--replica-path`s
    /// and the interpreter's installation).
    pub grants: Vec<Grant>,
    /// Who replicas run as (`None`: the server's own user, which is not root).
    pub user: Option<ReplicaUser>,
    /// Where each run's scratch directory is made.
    pub scratch_root: PathBuf,
    /// A bytecode cache made by the server (the runtime compiled, in `PYTHONPYCACHEPREFIX`'s
    /// layout) that each run's cache starts from, so no replica compiles the runtime again.
    pub pycache_seed: Option<PathBuf>,
    /// The machine's shared directories (and System V IPC) each run gets its own of (`None`:
    /// runs share the machine's).
    pub shared_dirs: Option<SharedDirs>,
}

/// How replicas are isolated, as the server reports it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    config: SandboxConfig,
    /// The Landlock ABI in force (`None`: no ruleset, by choice or for want of Landlock).
    abi: Option<i32>,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Sandbox {
        let abi = match config.mode {
            SandboxMode::Off => None,
            _ => kernel_abi(),
        };
        Sandbox { config, abi }
    }

    /// The Landlock ABI the rulesets use (`None`: replicas run without one).
    pub fn landlock_abi(&self) -> Option<i32> {
        self.abi
    }

    pub fn mode(&self) -> SandboxMode {
        self.config.mode
    }

    /// The bytecode cache runs start from, once the server has made it.
    pub fn pycache_seed(&self) -> Option<&Path> {
        self.config.pycache_seed.as_deref()
    }

    /// The shared directories each run gets its own of, if any.
    pub fn shared_dirs(&self) -> Option<&SharedDirs> {
        self.config.shared_dirs.as_ref()
    }

    /// The user replicas run as (the server's own when it is not root).
    pub fn user_name(&self) -> String {
        match &self.config.user {
            Some(u) => u.name.clone(),
            None => current_user_name(),
        }
    }

    /// Makes a run's scratch directory and the directories the plan writes to (owned by the
    /// replica's user), and its ruleset. Blocking.
    pub fn prepare(&self, plan: &ReplicaPlan) -> std::io::Result<Jail> {
        let scratch = self.config.scratch_root.join(format!(
            "{}-{}",
            plan.replica_id,
            uuid::Uuid::new_v4().simple()
        ));
        for dir in plan.access.write.iter().chain([&scratch]) {
            self.private_dir(dir)?;
        }
        if let Some(seed) = self.config.pycache_seed.as_deref().filter(|s| s.is_dir()) {
            // Best effort: without it the runtime is only compiled again.
            if let Err(e) = self.seed_pycache(seed, &scratch.join("pycache")) {
                tracing::debug!("cannot seed {}'s bytecode cache: {e}", plan.replica_id);
            }
        }
        let jail = |ruleset| Jail {
            scratch: scratch.clone(),
            ruleset,
            user: self.config.user.as_ref().map(|u| (u.uid, u.gid)),
            shared_dirs: self.config.shared_dirs.as_ref().map(|dirs| {
                let access = &plan.access;
                dirs.without(access.read.iter().chain(access.write.iter()))
            }),
        };
        let Some(abi) = self.abi else {
            return Ok(jail(None));
        };
        let grants = self.grants(plan, &scratch);
        let fd = ruleset::build(abi, &grants).map_err(std::io::Error::other);
        match fd {
            Ok(fd) => Ok(jail(Some(fd))),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                Err(e)
            }
        }
    }

    fn grants(&self, plan: &ReplicaPlan, scratch: &Path) -> ruleset::Grants {
        let mut grants = ruleset::Grants::default();
        match self.config.mode {
            SandboxMode::Standard => grants.full = ruleset::around(&self.config.hidden),
            SandboxMode::Strict => {
                grants.read.extend(STRICT_READ.iter().map(PathBuf::from));
                grants.full.push(PathBuf::from("/dev"));
            }
            SandboxMode::Off => {}
        }
        for g in &self.config.grants {
            let into = if g.write {
                &mut grants.full
            } else {
                &mut grants.read
            };
            into.push(g.path.clone());
        }
        grants.read.extend(plan.access.read.iter().cloned());
        grants.full.extend(plan.access.write.iter().cloned());
        grants.full.push(scratch.to_path_buf());
        grants
    }

    /// `dir` (and its missing parents), 0700, owned by the replica's user.
    /// Links the files of `seed` into `cache` (copies them across file systems), in
    /// directories of the replica's own; the files stay the server's, read-only to it.
    fn seed_pycache(&self, seed: &Path, cache: &Path) -> std::io::Result<()> {
        self.private_dir(cache)?;
        for entry in std::fs::read_dir(seed)?.flatten() {
            let (from, to) = (entry.path(), cache.join(entry.file_name()));
            let kind = entry.file_type()?;
            if kind.is_dir() {
                self.seed_pycache(&from, &to)?;
            } else if kind.is_file() && std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to)?;
            }
        }
        Ok(())
    }

    fn private_dir(&self, dir: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        if let Some(u) = &self.config.user {
            std::os::unix::fs::chown(dir, Some(u.uid), Some(u.gid))?;
        }
        Ok(())
    }
}

/// One run's confinement, made in the server before the child is started.
#[derive(Debug)]
pub struct Jail {
    scratch: PathBuf,
    ruleset: Option<OwnedFd>,
    user: Option<(u32, u32)>,
    shared_dirs: Option<SharedDirs>,
}

/// What the child does between fork and exec to enter its jail: plain data, so the closure
/// that runs it needs no allocation.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    user: Option<(u32, u32)>,
    ruleset_fd: Option<i32>,
}

impl Jail {
    /// `TMPDIR`, `HOME` and the bytecode cache point into the run's scratch directory.
    pub fn env(&self) -> Vec<(String, String)> {
        let scratch = self.scratch.display().to_string();
        vec![
            ("TMPDIR".to_string(), scratch.clone()),
            ("HOME".to_string(), scratch.clone()),
            (
                "PYTHONPYCACHEPREFIX".to_string(),
                format!("{scratch}/pycache"),
            ),
        ]
    }

    /// The shared directories the run gets its own of, entered first (see
    /// [`SharedDirs::enter`]).
    pub fn shared_dirs(&self) -> Option<&SharedDirs> {
        self.shared_dirs.as_ref()
    }

    pub fn entry(&self) -> Entry {
        Entry {
            user: self.user,
            ruleset_fd: self.ruleset.as_ref().map(|fd| fd.as_raw_fd()),
        }
    }

    /// Removes the run's scratch directory (once the run is over).
    pub async fn remove(self) {
        let scratch = self.scratch;
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(scratch)).await;
    }
}

impl Entry {
    /// The uid and gid the child becomes (`None`: it stays the server's user).
    pub fn user(&self) -> Option<(u32, u32)> {
        self.user
    }

    /// The descriptor of the run's Landlock ruleset, if it has one.
    pub fn ruleset_fd(&self) -> Option<i32> {
        self.ruleset_fd
    }

    /// Becomes the replica's user: no supplementary groups, its group, its uid (which drops
    /// every capability). Call in the child between fork and exec, before anything that a
    /// change of credentials resets (`PR_SET_PDEATHSIG`).
    ///
    /// # Safety
    /// Only between fork and exec; calls only async-signal-safe functions.
    pub unsafe fn drop_user(&self) -> std::io::Result<()> {
        let Some((uid, gid)) = self.user else {
            return Ok(());
        };
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        // setuid to a non-root uid must not be undoable.
        if libc::setuid(0) == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(())
    }

    /// Sets no-new-privs (setuid binaries and file capabilities give nothing) and restricts
    /// the child with its ruleset.
    ///
    /// # Safety
    /// Only between fork and exec; calls only async-signal-safe functions.
    pub unsafe fn restrict(&self) -> std::io::Result<()> {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if let Some(fd) = self.ruleset_fd {
            if libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The part of the server's environment a replica gets: how to find programs, the locale,
/// the time zone, and TLS, pip and proxy settings. Nothing else (tokens, cloud credentials)
/// reaches tenant code.
pub fn inherited_env() -> Vec<(String, String)> {
    std::env::vars().filter(|(k, _)| passes_on(k)).collect()
}

fn passes_on(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
    ];
    EXACT.contains(&key)
        || key.starts_with("LC_")
        || key.starts_with("PIP_")
        || (key.starts_with("PYTHON")
            && !matches!(key, "PYTHONPATH" | "PYTHONHOME" | "PYTHONSTARTUP"))
}

fn current_user_name() -> String {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    ReplicaUser::lookup_any(uid).unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_paths_parse_with_an_optional_rw() {
        assert_eq!(
            "/data:rw".parse::<Grant>().unwrap(),
            Grant {
                path: "/data".into(),
                write: true
            }
        );
        assert!(!"/data".parse::<Grant>().unwrap().write);
        assert!("data".parse::<Grant>().unwrap_err().contains("absolute"));
        assert!("loose".parse::<SandboxMode>().is_err());
    }

    #[test]
    fn a_runs_bytecode_cache_starts_from_the_servers_seed() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("seed");
        let compiled = seed.join("srv/runtime/cortex_runtime/__pycache__");
        std::fs::create_dir_all(&compiled).unwrap();
        std::fs::write(compiled.join("main.cpython-311.pyc"), b"pyc").unwrap();
        let sandbox = Sandbox::new(SandboxConfig {
            mode: SandboxMode::Off,
            ..Default::default()
        });
        let cache = dir.path().join("scratch/pycache");
        sandbox.seed_pycache(&seed, &cache).unwrap();
        let linked = cache.join("srv/runtime/cortex_runtime/__pycache__/main.cpython-311.pyc");
        assert_eq!(std::fs::read(&linked).unwrap(), b"pyc");
        assert_eq!(
            std::fs::metadata(&linked).unwrap().ino(),
            std::fs::metadata(compiled.join("main.cpython-311.pyc"))
                .unwrap()
                .ino(),
            "linked, not copied"
        );
    }

    #[test]
    fn only_harmless_server_variables_reach_replicas() {
        for ok in [
            "PATH",
            "LC_ALL",
            "PIP_FIND_LINKS",
            "SSL_CERT_FILE",
            "PYTHONUNBUFFERED",
        ] {
            assert!(passes_on(ok), "{ok}");
        }
        for secret in [
            "AWS_SECRET_ACCESS_KEY",
            "CORTEX_TOKEN",
            "PYTHONPATH",
            "HOME",
            "GITHUB_TOKEN",
        ] {
            assert!(!passes_on(secret), "{secret}");
        }
    }
}
