//! Replica sets: the replicas of one API version, and the versions of one API that serve.
//!
//! A [`ReplicaSet`] holds N replicas started from one plan (one spec and bundle, one job
//! token) and picks a ready one round-robin: one atomic increment (none for a single member),
//! then the next member that is ready and has room (members that are not are skipped). A
//! pick reads the members' list without a lock. A pick is a [`Slot`]: one
//! request in flight on that member until it is dropped. [`ReplicaSets`] is what serves one
//! API: the newest set, and older sets that keep serving while it starts. An update is "grow
//! the new set, shrink (retire) the old ones".

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::freed::Freed;
use super::swapped::Swapped;
use crate::engine::{Engine, Replica, ReplicaPlan};

/// Stops `members` (taken out by [`ReplicaSet::scale_to`]) once their requests have finished,
/// within `drain`, each then getting `grace` to exit; in tasks of `tasks`.
pub fn drain_in_background(
    tasks: &tokio_util::task::TaskTracker,
    members: Vec<Arc<Member>>,
    drain: Duration,
    grace: Duration,
) {
    for member in members {
        tasks.spawn(async move { member.drain_and_stop(drain, grace).await });
    }
}

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
    /// Read by every pick without a lock (`swapped.rs`).
    members: Swapped<Vec<Arc<Member>>>,
    /// Told whenever a slot is given back (shared by every set of the API).
    freed: Arc<Freed>,
    /// Started from zero replicas by a request: requests wait for it instead of being
    /// refused as not ready.
    cold_start: AtomicBool,
    /// Set once it is stopped for good.
    stopped: AtomicBool,
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
        freed: Arc<Freed>,
    ) -> Self {
        ReplicaSet {
            id: set_id(api, version),
            version: version.to_string(),
            job_token,
            deployment,
            template: Some(template),
            desired: AtomicU32::new(0),
            next_member: AtomicU32::new(0),
            members: Swapped::default(),
            freed,
            cold_start: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            membership: watch::Sender::new(0),
            next: AtomicUsize::new(0),
        }
    }

    /// A set that runs nothing (a TrafficSplitter's: its APIs serve).
    pub fn idle(api: &str, version: &str) -> Self {
        ReplicaSet {
            id: set_id(api, version),
            version: version.to_string(),
            job_token: String::new(),
            deployment: 0,
            template: None,
            desired: AtomicU32::new(0),
            next_member: AtomicU32::new(0),
            members: Swapped::default(),
            freed: Arc::default(),
            cold_start: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            membership: watch::Sender::new(0),
            next: AtomicUsize::new(0),
        }
    }

    /// A set of replicas that already run (tests: no engine).
    #[cfg(test)]
    pub(crate) fn of(api: &str, version: &str, members: Vec<Arc<dyn Replica>>) -> Self {
        let set = ReplicaSet::idle(api, version);
        set.desired.store(members.len() as u32, Ordering::Relaxed);
        set.next_member
            .store(members.len() as u32, Ordering::Relaxed);
        let members = members
            .into_iter()
            .map(|m| Member::new(m, set.freed.clone()))
            .collect();
        set.members.change(|all| *all = members);
        set
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
            .load()
            .iter()
            .map(|m| m.replica.clone())
            .collect()
    }

    /// Requests in flight on its members through the gateway.
    pub fn in_flight(&self) -> u32 {
        self.members.load().iter().map(|m| m.in_flight()).sum()
    }

    /// Whether it was stopped for good.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Whether requests wait for it to start rather than being refused: it has no replica
    /// (scaled to zero), or it is starting from zero.
    pub fn holds_requests(&self) -> bool {
        self.desired() == 0 || self.cold_start.load(Ordering::Relaxed)
    }

    /// Marks it as started from zero by traffic (see [`ReplicaSet::holds_requests`]); cleared
    /// when it goes back to zero.
    pub fn mark_cold_start(&self) {
        self.cold_start.store(true, Ordering::Relaxed);
    }

    /// Makes the set `n` replicas strong: starts new members through `engine` or takes the
    /// newest ones out. Returns the members taken out; the caller drains and stops them
    /// ([`drain_in_background`]). The
    /// engine is asked outside the members' lock, so predictions never wait on it.
    pub fn scale_to(&self, n: u32, engine: &dyn Engine) -> Vec<Arc<Member>> {
        self.desired.store(n, Ordering::Relaxed);
        if n == 0 {
            self.cold_start.store(false, Ordering::Relaxed);
        }
        let n = n as usize;
        let have = self.members.load().len();
        let started: Vec<Arc<Member>> = match &self.template {
            Some(template) if have < n => (have..n)
                .map(|_| {
                    let number = self.next_member.fetch_add(1, Ordering::Relaxed);
                    let mut plan = template.clone();
                    plan.replica_id = member_id(&self.id, number);
                    Member::new(engine.start(plan), self.freed.clone())
                })
                .collect(),
            _ => Vec::new(),
        };
        let removed = self.members.change(|members| {
            if self.is_stopped() {
                // Stopped meanwhile: what was just started goes back to be stopped.
                return Err(started);
            }
            members.extend(started);
            let keep = n.min(members.len());
            Ok(members.split_off(keep))
        });
        let removed = match removed {
            Ok(removed) => removed,
            Err(started) => return started,
        };
        self.membership.send_modify(|generation| *generation += 1);
        removed
    }

    /// Whether a member is ready (without moving the round-robin on).
    pub fn is_ready(&self) -> bool {
        self.members
            .load()
            .iter()
            .any(|m| m.replica.ready_addr().is_some())
    }

    /// Whether a member may still become ready: starting, restarting, or waiting for room
    /// (none has failed for good or stopped).
    pub fn is_coming(&self) -> bool {
        use crate::engine::ReplicaPhase::{Initializing, Pending, Restarting};
        self.members.load().iter().any(|m| {
            matches!(
                m.replica.snapshot().phase,
                Initializing | Pending | Restarting
            )
        })
    }

    /// A slot on a ready member with fewer than `max_in_flight` requests, round-robin.
    pub fn pick(&self, max_in_flight: u32) -> Pick {
        let members = self.members.load();
        let n = members.len();
        if n == 0 {
            return Pick::NoneReady;
        }
        // One member needs no turns (and no count shared by the connection threads).
        let start = match n {
            1 => 0,
            _ => self.next.fetch_add(1, Ordering::Relaxed),
        };
        let mut any_ready = false;
        for i in 0..n {
            let member = &members[(start + i) % n];
            let Some(addr) = member.replica.ready_addr() else {
                continue;
            };
            any_ready = true;
            let taken = member
                .in_flight
                // SeqCst: a request that waits for room looks after it listens (`freed.rs`).
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                    (c < max_in_flight).then_some(c + 1)
                });
            if taken.is_ok() {
                // Started from zero and serving: requests no longer wait for it when it fails.
                if self.cold_start.load(Ordering::Relaxed) {
                    self.cold_start.store(false, Ordering::Relaxed);
                }
                return Pick::Slot(Slot {
                    member: member.clone(),
                    addr,
                });
            }
        }
        if any_ready {
            Pick::Full
        } else {
            Pick::NoneReady
        }
    }

    /// Stops every member (each gets `grace` once its requests have finished), and waits
    /// until they are gone.
    pub async fn stop(&self, grace: Duration) {
        self.stopped.store(true, Ordering::Relaxed);
        self.membership.send_modify(|generation| *generation += 1);
        // After any change under way: what it started is stopped too.
        let members = self.members.settled();
        futures_util::future::join_all(members.iter().map(|m| m.drain_and_stop(grace, grace)))
            .await;
    }
}

/// What [`ReplicaSet::pick`] found.
pub enum Pick {
    Slot(Slot),
    /// Members are ready, and each has as many requests in flight as it may.
    Full,
    NoneReady,
}

/// One replica of a set, and the requests it has in flight through the gateway.
pub struct Member {
    replica: Arc<dyn Replica>,
    in_flight: AtomicU32,
    /// Its set's: told when one of its slots is given back.
    freed: Arc<Freed>,
}

impl Member {
    fn new(replica: Arc<dyn Replica>, freed: Arc<Freed>) -> Arc<Member> {
        Arc::new(Member {
            replica,
            in_flight: AtomicU32::new(0),
            freed,
        })
    }

    pub fn replica(&self) -> &Arc<dyn Replica> {
        &self.replica
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Waits (at most `drain`) until its requests in flight have finished, then stops it,
    /// giving it `grace`; resolves once it is gone. Nothing new reaches a member that was
    /// taken out of its set, so in-flight requests are all it has to finish.
    pub async fn drain_and_stop(&self, drain: Duration, grace: Duration) {
        let deadline = Instant::now() + drain;
        while self.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.replica.stop(grace).await;
    }
}

/// One request in flight on a member, from [`ReplicaSet::pick`] until dropped.
pub struct Slot {
    member: Arc<Member>,
    addr: SocketAddr,
}

impl Slot {
    /// Where to send the request.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.member.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.member.freed.gave_back();
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

    /// A slot on a ready replica with room, preferring the newest version.
    pub fn pick(&self, max_in_flight: u32) -> Pick {
        let mut found = self.newest.pick(max_in_flight);
        if matches!(found, Pick::Slot(_)) {
            return found;
        }
        for set in self.older.read().unwrap_or_else(|p| p.into_inner()).iter() {
            match set.pick(max_in_flight) {
                Pick::Slot(slot) => return Pick::Slot(slot),
                Pick::Full => found = Pick::Full,
                Pick::NoneReady => {}
            }
        }
        found
    }

    /// Requests in flight on every version's replicas.
    pub fn in_flight(&self) -> u32 {
        self.newest.in_flight()
            + self
                .older
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|set| set.in_flight())
                .sum::<u32>()
    }

    /// Told whenever a slot on any version is given back.
    pub fn freed(&self) -> &Arc<Freed> {
        &self.newest.freed
    }

    /// Takes every set out of service, the older ones first, the newest last (to stop them).
    pub fn retire_all(&self) -> Vec<Arc<ReplicaSet>> {
        let mut all = self.retire_older();
        all.push(self.newest.clone());
        all
    }
}
