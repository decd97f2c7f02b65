//! One deployed API as the server runs it: its spec, the replica sets that serve it, and its
//! request counters. What the route table holds.

use std::sync::Arc;

use super::access::ModelAccess;
use super::metrics::Metrics;
use super::replica_set::ReplicaSets;
use super::route_table::Routed;
use super::splitter::Splitter;
use super::waiting::{Queue, Queued};
use crate::spec::ApiSpec;

pub struct LiveApi {
    pub model_id: String,
    /// The latest deployed spec (what the newest replica set runs).
    pub spec: ApiSpec,
    /// The latest deployed version: the hash of the spec and the bundle.
    pub spec_hash: String,
    pub last_updated: i64,
    pub versions: ReplicaSets,
    pub metrics: Arc<Metrics>,
    /// A second path it answers at (`/<deployment_name>` of a Model Bazaar deploy).
    pub extra_path: Option<String>,
    /// Who may call it when predictions need permission (a server not bound to loopback);
    /// `cortex access` changes it while it runs.
    pub access: std::sync::RwLock<ModelAccess>,
    /// Requests waiting for a replica.
    pub queue: Queue,
    /// Cancelled once another deploy replaced it or it was removed: what follows it stops.
    pub ended: tokio_util::sync::CancellationToken,
    /// A TrafficSplitter's choice of API per request (it runs no replica itself).
    pub splitter: Option<Splitter>,
    /// How many replicas the newest version rolls out to while older ones still serve (the
    /// autoscaler sets the size once the update is done).
    pub target: u32,
}

impl LiveApi {
    /// Who may call it now.
    pub fn access(&self) -> ModelAccess {
        self.access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes who may call it.
    pub fn set_access(&self, access: ModelAccess) {
        *self.access.write().unwrap_or_else(|p| p.into_inner()) = access;
    }

    /// Whether a replica is ready to answer (the round-robin does not move).
    pub fn is_ready(&self) -> bool {
        self.versions.is_ready()
    }

    /// Whether it is a BatchAPI (it takes jobs; its workers belong to them).
    pub fn is_batch(&self) -> bool {
        self.spec.kind == crate::spec::ApiKind::BatchAPI
    }

    /// Whether it is a RealtimeAPI (it runs replicas that answer predictions).
    pub fn is_realtime(&self) -> bool {
        self.spec.kind == crate::spec::ApiKind::RealtimeAPI
    }

    /// Whether an older version still serves while the latest one starts.
    pub fn has_older(&self) -> bool {
        !self.versions.older().is_empty()
    }
}

impl Queued for LiveApi {
    fn queue(&self) -> &Queue {
        &self.queue
    }
}

impl Routed for LiveApi {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn paths(&self) -> Vec<&str> {
        std::iter::once(self.spec.networking.endpoint.as_str())
            .chain(self.extra_path.as_deref())
            .collect()
    }

    /// A RealtimeAPI serves every path under `/<model_id>/` and `/<deployment_name>/`, as Model
    /// Bazaar routes its deployments (the rest of the path goes to the replica).
    fn prefixes(&self) -> Vec<&str> {
        if !self.is_realtime() {
            return Vec::new();
        }
        std::iter::once(self.model_id.as_str())
            .chain(
                self.extra_path
                    .as_deref()
                    .map(|p| p.trim_start_matches('/')),
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::engine::fake::FakeReplica;
    use crate::engine::{Replica, ReplicaPhase};
    use crate::server::replica_set::{Pick, ReplicaSet};
    use crate::server::route_table::RouteTable;

    fn live(name: &str, endpoint: &str, sets: ReplicaSets) -> Arc<LiveApi> {
        let yaml = format!(
            "- name: {name}\n  kind: RealtimeAPI\n  predictor: {{type: command, command: x}}\n  networking: {{endpoint: {endpoint}}}\n"
        );
        let spec = crate::spec::parse_str(&yaml, "cortex.yaml")
            .unwrap()
            .remove(0);
        Arc::new(LiveApi {
            model_id: format!("model-{name}"),
            spec,
            spec_hash: "0123456789abcdef".to_string(),
            last_updated: 0,
            versions: sets,
            metrics: Arc::default(),
            extra_path: None,
            queue: Default::default(),
            ended: Default::default(),
            splitter: None,
            target: 1,
            access: std::sync::RwLock::new(ModelAccess {
                model_id: format!("model-{name}"),
                owner_id: "owner".into(),
                access: crate::server::access::Access::Private,
                default_permission: crate::server::access::DefaultPermission::Read,
                team_id: None,
            }),
        })
    }

    fn set_of(version: &str, replicas: &[&Arc<FakeReplica>]) -> Arc<ReplicaSet> {
        let members: Vec<Arc<dyn Replica>> = replicas
            .iter()
            .map(|r| (*r).clone() as Arc<dyn Replica>)
            .collect();
        Arc::new(ReplicaSet::of("iris", version, members))
    }

    /// A ready replica's port (the slot is given back at once).
    fn pick(api: &LiveApi) -> Option<std::net::SocketAddr> {
        match api.versions.pick(u32::MAX) {
            Pick::Slot(slot) => Some(slot.addr()),
            Pick::Full | Pick::NoneReady => None,
        }
    }

    /// How often each port is picked in `n` picks.
    fn picks(api: &LiveApi, n: usize) -> HashMap<u16, usize> {
        let mut seen = HashMap::new();
        for _ in 0..n {
            if let Some(addr) = pick(api) {
                *seen.entry(addr.port()).or_default() += 1;
            }
        }
        seen
    }

    #[test]
    fn the_route_table_and_replica_sets_pick_ready_replicas_in_turn() {
        let replicas: Vec<Arc<FakeReplica>> = (0..3)
            .map(|i| FakeReplica::new(&format!("r{i}"), 9000 + i, ReplicaPhase::Ready))
            .collect();
        let table: RouteTable<LiveApi> = RouteTable::default();
        let set = set_of("aaaaaaaa", &replicas.iter().collect::<Vec<_>>());
        table
            .insert(live("iris", "/v1/iris", ReplicaSets::new(set, Vec::new())))
            .unwrap();
        assert!(
            table.by_path("/iris").is_none(),
            "routed by its endpoint only"
        );
        let api = table.by_path("/v1/iris").expect("routed by path");
        assert!(Arc::ptr_eq(&api, &table.get("iris").unwrap()));

        // Asking whether it is ready does not move the turn on.
        assert!(api.is_ready() && api.is_ready());
        // Three ready replicas are chosen in turn.
        let order: Vec<u16> = (0..6).map(|_| pick(&api).unwrap().port()).collect();
        assert_eq!(order, [9000, 9001, 9002, 9000, 9001, 9002]);

        // One that becomes unready is skipped; the others keep answering.
        replicas[1].set_phase(ReplicaPhase::Restarting);
        let seen = picks(&api, 30);
        assert_eq!(seen.get(&9001), None, "{seen:?}");
        assert!(seen[&9000] > 0 && seen[&9002] > 0, "{seen:?}");
        assert_eq!(seen.values().sum::<usize>(), 30);

        // Ready again: back in turn.
        replicas[1].set_phase(ReplicaPhase::Ready);
        assert!(picks(&api, 3).contains_key(&9001));

        // None ready: none picked.
        for r in &replicas {
            r.set_phase(ReplicaPhase::Failed);
        }
        assert_eq!(pick(&api), None);
        assert!(!api.is_ready());
    }

    #[test]
    fn an_empty_set_yields_none_and_an_older_version_serves_until_the_newest_is_ready() {
        let empty = Arc::new(ReplicaSet::of("iris", "bbbbbbbb", Vec::new()));
        assert!(matches!(empty.pick(1), Pick::NoneReady));
        let api = live("iris", "/iris", ReplicaSets::new(empty, Vec::new()));
        assert_eq!(pick(&api), None);

        let old = FakeReplica::new("old", 9100, ReplicaPhase::Ready);
        let new = FakeReplica::new("new", 9200, ReplicaPhase::Initializing);
        let api = live(
            "iris",
            "/iris",
            ReplicaSets::new(
                set_of("cccccccc", &[&new]),
                vec![set_of("dddddddd", &[&old])],
            ),
        );
        assert_eq!(pick(&api).unwrap().port(), 9100, "the older version serves");
        assert!(api.has_older());
        new.set_phase(ReplicaPhase::Ready);
        assert_eq!(pick(&api).unwrap().port(), 9200, "the newest is preferred");
        let retired = api.versions.retire_older();
        assert_eq!(retired.len(), 1);
        assert!(!api.has_older());
    }

    #[test]
    fn replacing_an_api_moves_its_path_and_removing_it_unroutes_it() {
        let r = FakeReplica::new("r", 9300, ReplicaPhase::Ready);
        let table: RouteTable<LiveApi> = RouteTable::default();
        let first = live(
            "iris",
            "/a",
            ReplicaSets::new(set_of("eeeeeeee", &[&r]), Vec::new()),
        );
        assert!(table.insert(first.clone()).unwrap().is_none());
        let second = live(
            "iris",
            "/b",
            ReplicaSets::new(set_of("ffffffff", &[&r]), Vec::new()),
        );
        let replaced = table.insert(second.clone()).unwrap().unwrap();
        assert!(Arc::ptr_eq(&replaced, &first));
        assert!(table.by_path("/a").is_none());
        assert!(Arc::ptr_eq(&table.by_path("/b").unwrap(), &second));
        assert!(table.remove("iris").is_some());
        assert!(table.by_path("/b").is_none() && table.get("iris").is_none());
        assert!(table.close().is_empty());
        assert!(table.insert(first).is_err(), "closed tables route nothing");
    }

    #[test]
    fn a_replica_takes_at_most_max_in_flight_requests_and_a_given_back_slot_frees_room() {
        let a = FakeReplica::new("a", 9400, ReplicaPhase::Ready);
        let b = FakeReplica::new("b", 9401, ReplicaPhase::Ready);
        let api = live(
            "iris",
            "/iris",
            ReplicaSets::new(set_of("abababab", &[&a, &b]), Vec::new()),
        );
        let take = || match api.versions.pick(2) {
            Pick::Slot(slot) => Some(slot),
            _ => None,
        };
        let held: Vec<_> = (0..4).map(|_| take().expect("room")).collect();
        let ports: Vec<u16> = held.iter().map(|s| s.addr().port()).collect();
        assert_eq!(ports.iter().filter(|p| **p == 9400).count(), 2, "{ports:?}");
        assert_eq!(api.versions.in_flight(), 4);
        assert!(matches!(api.versions.pick(2), Pick::Full));
        drop(held);
        assert_eq!(api.versions.in_flight(), 0);
        assert!(take().is_some());
        a.set_phase(ReplicaPhase::Failed);
        b.set_phase(ReplicaPhase::Failed);
        assert!(matches!(api.versions.pick(2), Pick::NoneReady));
    }
}
