//! A replica without a process, for unit tests of what sits above the engine: its phase and
//! port are set by the test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::{Replica, ReplicaLogs, ReplicaPhase, ReplicaSnapshot};

#[derive(Debug)]
pub struct FakeReplica {
    id: String,
    port: u16,
    phase: watch::Sender<ReplicaPhase>,
}

impl FakeReplica {
    /// A replica that serves on `port` once set ready.
    pub fn new(id: &str, port: u16, phase: ReplicaPhase) -> Arc<FakeReplica> {
        Arc::new(FakeReplica {
            id: id.to_string(),
            port,
            phase: watch::Sender::new(phase),
        })
    }

    pub fn set_phase(&self, phase: ReplicaPhase) {
        self.phase.send_replace(phase);
    }
}

impl Replica for FakeReplica {
    fn id(&self) -> &str {
        &self.id
    }

    fn snapshot(&self) -> ReplicaSnapshot {
        ReplicaSnapshot {
            port: Some(self.port),
            ..ReplicaSnapshot::new(self.id.clone(), *self.phase.borrow())
        }
    }

    fn ready_addr(&self) -> Option<SocketAddr> {
        (*self.phase.borrow() == ReplicaPhase::Ready)
            .then(|| SocketAddr::from(([127, 0, 0, 1], self.port)))
    }

    fn phases(&self) -> watch::Receiver<ReplicaPhase> {
        self.phase.subscribe()
    }

    fn stop(&self, _grace: Duration) -> BoxFuture<'static, ()> {
        self.set_phase(ReplicaPhase::Stopped);
        Box::pin(async {})
    }

    fn logs(&self) -> Arc<dyn ReplicaLogs> {
        Arc::new(NoLogs)
    }

    fn did_work(&self) {}
}

struct NoLogs;

impl ReplicaLogs for NoLogs {
    fn tail_lines(&self, _n: usize) -> BoxFuture<'static, Vec<String>> {
        Box::pin(async { Vec::new() })
    }

    fn tail_offset(&self, _n: usize) -> BoxFuture<'static, u64> {
        Box::pin(async { 0 })
    }

    fn size(&self) -> BoxFuture<'static, u64> {
        Box::pin(async { 0 })
    }

    fn read_from(&self, _offset: u64) -> BoxFuture<'static, Option<Bytes>> {
        Box::pin(async { Some(Bytes::new()) })
    }

    fn streams(&self, _n: usize) -> BoxFuture<'static, Result<(String, String), String>> {
        Box::pin(async { Ok((String::new(), String::new())) })
    }
}
