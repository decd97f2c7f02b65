//! Replica sets: the replicas of one API version, and the versions of one API that serve.
//!
//! A [`ReplicaSet`] holds N replicas started from one plan (one spec and bundle, one job
//! token) and picks a ready one round-robin: one atomic increment, then the next member that
//! is ready (members that are not are skipped). [`ReplicaSets`] is what serves one API: the
//! newest set, and older sets that keep serving while it starts. An update is "grow the new
//! set, shrink (retire) the old ones".

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::engine::{Engine, Replica, ReplicaPlan};

/// The replicas of one version of an API.
pub struct ReplicaSet {
    /// `<api>-<first 8 of the version>`; members are `<id>-<n>`.
    id: String,
    /// The version these replicas run (the hash of the spec and bundle).
    version: String,
    /// The job token this version's replicas were given (`CORTEX_JOB_TOKEN`), valid while the
    /// version serves.
    job_token: String,
    /// Which deployment of the model this version is (its job token's).
    deployment: i64,
    /// What a new member runs (its id aside).
    template: Option<ReplicaPlan>,
    /// How many replicas the set should have; set by [`ReplicaSet::scale_to`].
    desired: AtomicU32,
    /// The number the next new member gets.
    next_member: AtomicU32,
    members: RwLock<Vec<Arc<dyn Replica>>>,
    /// Bumped whenever members join or leave, for whoever watches their phases.
    membership: watch::Sender<u64>,
    /// Round-robin position.
    next: AtomicUsize,
}

impl std::fmt::Debug for ReplicaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaSet")
            .field("id", &self.id)
            .field("desired", &self.desired())
            .field("members", &self.members().len())
            .finish()
    }
}

impl ReplicaSet {
    /// An empty set of `version`'s replicas; [`ReplicaSet::scale_to`] starts them from
    /// `template` (its `replica_id` is replaced by each member's).
    pub fn new(
        api: &str,
        version: &str,
        (deployment, job_token): (i64, String),
        template: ReplicaPlan,
    ) -> Self {
        ReplicaSet {
            id: set_id(api, version),
            version: version.to_string(),
            job_token,
            deployment,
            template: Some(template),
            desired: AtomicU32::new(0),
            next_member: AtomicU32::new(0),
            members: RwLock::new(Vec::new()),
            membership: watch::Sender::new(0),
            next: AtomicUsize::new(0),
        }
    }

    /// A set of replicas that already run (tests: no engine).
    #[cfg(test)]
    pub(crate) fn of(api: &str, version: &str, members: Vec<Arc<dyn Replica>>) -> Self {
        ReplicaSet {
            id: set_id(api, version),
            version: version.to_string(),
            job_token: String::new(),
            deployment: 0,
            template: None,
            desired: AtomicU32::new(members.len() as u32),
            next_member: AtomicU32::new(members.len() as u32),
            members: RwLock::new(members),
            membership: watch::Sender::new(0),
            next: AtomicUsize::new(0),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// What a new member runs (a BatchAPI's job workers start from it too).
    pub fn template(&self) -> Option<&ReplicaPlan> {
        self.template.as_ref()
    }

    pub fn job_token(&self) -> &str {
        &self.job_token
    }

    pub fn deployment(&self) -> i64 {
        self.deployment
    }

    /// How many replicas the set should have.
    pub fn desired(&self) -> u32 {
        self.desired.load(Ordering::Relaxed)
    }

    /// Follows changes of membership (members started or taken out).
    pub fn membership(&self) -> watch::Receiver<u64> {
        self.membership.subscribe()
    }

    /// The members, oldest first.
    pub fn members(&self) -> Vec<Arc<dyn Replica>> {
        self.members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes the set `n` replicas strong: starts new members through `engine` or takes the
    /// newest ones out. Returns the members taken out; the caller stops them. The engine is
    /// asked outside the members' lock, so predictions never wait on it.
    pub fn scale_to(&self, n: u32, engine: &dyn Engine) -> Vec<Arc<dyn Replica>> {
        self.desired.store(n, Ordering::Relaxed);
        let n = n as usize;
        let have = self.members.read().unwrap_or_else(|p| p.into_inner()).len();
        let started: Vec<Arc<dyn Replica>> = match &self.template {
            Some(template) if have < n => (have..n)
                .map(|_| {
                    let number = self.next_member.fetch_add(1, Ordering::Relaxed);
                    let mut plan = template.clone();
                    plan.replica_id = member_id(&self.id, number);
                    engine.start(plan)
                })
                .collect(),
            _ => Vec::new(),
        };
        let removed = {
            let mut members = self.members.write().unwrap_or_else(|p| p.into_inner());
            members.extend(started);
            let keep = n.min(members.len());
            members.split_off(keep)
        };
        self.membership.send_modify(|generation| *generation += 1);
        removed
    }

    /// Whether a member is ready (without moving the round-robin on).
    pub fn is_ready(&self) -> bool {
        self.members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|m| m.ready_addr().is_some())
    }

    /// A ready member's address, round-robin; `None` when no member is ready.
    pub fn pick(&self) -> Option<SocketAddr> {
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        let n = members.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|i| members[(start + i) % n].ready_addr())
    }

    /// Stops every member (each gets `grace`), and waits until they are gone.
    pub async fn stop(&self, grace: Duration) {
        let members = self.members();
        futures_util::future::join_all(members.iter().map(|m| m.stop(grace))).await;
    }
}

fn set_id(api: &str, version: &str) -> String {
    format!("{api}-{}", &version[..8.min(version.len())])
}

fn member_id(set_id: &str, number: u32) -> String {
    format!("{set_id}-{number}")
}

/// The replica sets that serve one API: the newest, and older ones that serve until it is
/// ready. The newest set never changes; older ones are retired.
pub struct ReplicaSets {
    newest: Arc<ReplicaSet>,
    older: RwLock<Vec<Arc<ReplicaSet>>>,
}

impl ReplicaSets {
    pub fn new(newest: Arc<ReplicaSet>, older: Vec<Arc<ReplicaSet>>) -> Self {
        ReplicaSets {
            newest,
            older: RwLock::new(older),
        }
    }

    /// The set running the latest deployed version.
    pub fn newest(&self) -> &Arc<ReplicaSet> {
        &self.newest
    }

    /// Older versions' sets that still serve, newest first.
    pub fn older(&self) -> Vec<Arc<ReplicaSet>> {
        self.older.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes the older sets out of service (to stop them).
    pub fn retire_older(&self) -> Vec<Arc<ReplicaSet>> {
        std::mem::take(&mut *self.older.write().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether any version has a ready replica (without moving any round-robin on).
    pub fn is_ready(&self) -> bool {
        self.newest.is_ready()
            || self
                .older
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|set| set.is_ready())
    }

    /// A ready replica's address, preferring the newest version.
    pub fn pick(&self) -> Option<SocketAddr> {
        self.newest.pick().or_else(|| {
            self.older
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find_map(|set| set.pick())
        })
    }

    /// Takes every set out of service, the older ones first, the newest last (to stop them).
    pub fn retire_all(&self) -> Vec<Arc<ReplicaSet>> {
        let mut all = self.retire_older();
        all.push(self.newest.clone());
        all
    }
}
