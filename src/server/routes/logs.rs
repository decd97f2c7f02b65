//! `GET /api/v2/apis/{name}/logs`: a replica's log, streamed in chunks (never read whole into
//! memory); with `follow=true` it keeps streaming what the replica writes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use super::access_lost::access_lost;
use super::apis::find;
use super::merged_logs::{merged, Check, Feed, Origin, Source};
use crate::api::LogsQuery;
use crate::engine::{follow, LogEvent, Replica, ReplicaLogs};
use crate::server::auth::AuthMember;
use crate::server::deployments::Deployments;
use crate::server::error::ApiError;
use crate::server::live_api::LiveApi;
use crate::server::state::AppState;
use crate::store::replicas;

/// How often a follower looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub async fn logs(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::BadRequest(format!(
            "{}; use follow=true|false and tail=<number of lines>",
            e.body_text()
        ))
    })?;
    let row = find(&state, &name).await?;
    // A model's given name finds it too; from here on, the name it is routed by.
    let name = row.name.clone();
    super::require(&caller, &row, crate::server::access::Level::Read)?;
    if row.kind == crate::spec::ApiKind::TrafficSplitter.as_str() {
        return Err(ApiError::Unprocessable(format!(
            "{name} is a TrafficSplitter: it runs nothing, so it has no logs; `cortex get {name}` lists its apis, whose logs `cortex logs <api>` shows"
        )));
    }
    if row.kind == crate::spec::ApiKind::BatchAPI.as_str() {
        return Err(ApiError::Unprocessable(format!(
            "{name} is a BatchAPI: its logs are each job's; `cortex logs {name} JOB_ID` shows one (`cortex get {name}` lists its jobs)"
        )));
    }
    let live = state.deployments.get(&name);
    let lost = access_lost(state.clone(), headers, row.id.clone());
    if let Some(live) = live.clone().filter(|live| merges_replicas(live)) {
        return Ok(replicas_merged(&state, live, query, lost).await);
    }
    let (replica_id, logs) = match live.as_ref().and_then(|live| followed_replica(live)) {
        Some(replica) => (replica.id().to_string(), replica.logs()),
        None => {
            let id = row.id.clone();
            let latest = state
                .store
                .call(move |c| replicas::latest(c, &id))
                .await?
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "{name} has not started a replica yet, so it has no logs"
                    ))
                })?;
            let logs = state.deployments.replica_logs(&name, &latest);
            (latest, logs)
        }
    };
    // The end is read first: lines written meanwhile can only shorten `--tail`, never lengthen it.
    let end = logs.size().await;
    let start = match query.tail {
        Some(n) => logs.tail_offset(n).await,
        None => 0,
    };
    let shutdown = state.shutdown.clone();
    let body: BoxStream<'static, Bytes> = match live.filter(|_| query.follow) {
        Some(live) => Following {
            name,
            live,
            replica_id,
            events: follow(logs, start, FOLLOW_POLL),
            deployments: state.deployments.clone(),
        }
        .into_stream(),
        None => up_to(logs, start, end),
    };
    let body = body
        .take_until(async move { shutdown.cancelled().await })
        .take_until(lost);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(body.map(Ok::<_, std::io::Error>)),
    )
        .into_response())
}

/// Whether `cortex logs` shows its replicas' lines merged, each with a prefix: when the API
/// runs more than one, or runs one and may run more (it autoscales: a follower then takes in
/// the replicas that start). An API with one replica for good shows its lines as they are.
fn merges_replicas(live: &LiveApi) -> bool {
    let members = serving_replicas(live).len();
    let may_grow = live
        .spec
        .autoscaling
        .as_ref()
        .is_some_and(|a| a.max_replicas > 1);
    members > 1 || (members == 1 && may_grow)
}

/// Every serving replica of `live`, oldest version first.
fn serving_replicas(live: &LiveApi) -> Vec<Arc<dyn Replica>> {
    let mut sets = live.versions.older();
    sets.reverse();
    sets.push(live.versions.newest().clone());
    sets.iter().flat_map(|s| s.members()).collect()
}

/// The short name a replica's lines carry: its id without the API's name
/// (`iris-1a2b3c4d-0` → `[1a2b3c4d-0] `).
fn replica_prefix(api: &str, replica_id: &str) -> String {
    let short = replica_id
        .strip_prefix(api)
        .and_then(|rest| rest.strip_prefix('-'))
        .unwrap_or(replica_id);
    format!("[{short}] ")
}

/// The merged log of every replica of `live` (the last `tail` lines of each); following, it
/// takes in replicas as they start and ends when the API is deleted.
async fn replicas_merged(
    state: &AppState,
    live: Arc<LiveApi>,
    query: LogsQuery,
    lost: impl std::future::Future<Output = ()> + Send + 'static,
) -> Response {
    let name = live.spec.name.clone();
    let mut sources = Vec::new();
    for replica in serving_replicas(&live) {
        let logs = replica.logs();
        let start = match query.tail {
            Some(n) => logs.tail_offset(n).await,
            None => 0,
        };
        sources.push(Source::from_offset(
            Origin::Worker(logs),
            replica_prefix(&name, replica.id()),
            start,
        ));
    }
    let feed = ReplicasFeed {
        name,
        deployments: state.deployments.clone(),
        versions: vec![live.versions.newest().version().to_string()],
        followed: sources.iter().map(|s| s.prefix().to_string()).collect(),
    };
    let shutdown = state.shutdown.clone();
    let body = merged(sources, query.follow, feed)
        .take_until(async move { shutdown.cancelled().await })
        .take_until(lost);
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(body.map(Ok::<_, std::io::Error>)),
    )
        .into_response()
}

/// Follows an API's replicas: new ones join (from their first line), with a line saying so;
/// over once the API is deleted.
struct ReplicasFeed {
    name: String,
    deployments: Arc<Deployments>,
    /// The versions whose replicas were seen.
    versions: Vec<String>,
    /// The prefixes of every replica followed so far (a replica id can come back: its log
    /// file is then read on from its end, not again from the start).
    followed: std::collections::HashSet<String>,
}

/// How long a replica that stopped serving is still read: it drains (up to the API's
/// `networking.timeout`), is asked to stop and gets 5 s more; then its lines are over.
fn retired_read_for(live: &LiveApi) -> Duration {
    live.spec.networking.timeout.to_std() + Duration::from_secs(30)
}

impl Feed for ReplicasFeed {
    fn check<'a>(&'a mut self, sources: &'a mut Vec<Source>) -> BoxFuture<'a, Check> {
        Box::pin(async move {
            let mut note = Vec::new();
            let Some(live) = self.deployments.get(&self.name) else {
                return Check { ended: true, note };
            };
            let version = live.versions.newest().version().to_string();
            let redeployed = !self.versions.contains(&version);
            let serving: Vec<(String, Arc<dyn Replica>)> = serving_replicas(&live)
                .into_iter()
                .map(|r| (replica_prefix(&self.name, r.id()), r))
                .collect();
            // Replicas that stopped serving (scaled down, replaced) are read a while more, then
            // dropped: a long follow does not keep every replica the API ever ran.
            let read_for = retired_read_for(&live);
            for source in sources.iter_mut() {
                if serving.iter().any(|(prefix, _)| prefix == source.prefix()) {
                    source.unretire();
                } else {
                    source.retire(read_for);
                }
            }
            for (prefix, replica) in serving {
                if sources.iter().any(|s| s.prefix() == prefix) {
                    continue;
                }
                let why = if redeployed {
                    "was redeployed"
                } else {
                    "started a replica"
                };
                note.extend_from_slice(
                    format!(
                        "cortex: {} {why}; following its new replica {}\n",
                        self.name,
                        prefix.trim()
                    )
                    .as_bytes(),
                );
                let logs = replica.logs();
                // A replica id seen before (its set was made again): its file is read on from
                // its end, not again from the start.
                let start = if self.followed.insert(prefix.clone()) {
                    0
                } else {
                    logs.size().await
                };
                sources.push(Source::from_offset(Origin::Worker(logs), prefix, start));
            }
            if redeployed {
                self.versions.push(version);
            }
            Check { ended: false, note }
        })
    }
}

/// The replica whose log `cortex logs` shows: the first of the newest version.
fn followed_replica(live: &LiveApi) -> Option<Arc<dyn Replica>> {
    live.versions.newest().members().into_iter().next()
}

/// The log from `start` to `end`, in chunks (never read whole into memory).
fn up_to(logs: Arc<dyn ReplicaLogs>, start: u64, end: u64) -> BoxStream<'static, Bytes> {
    Box::pin(futures_util::stream::unfold(start, move |offset| {
        let logs = logs.clone();
        async move {
            if offset >= end {
                return None;
            }
            let (from, mut chunk) = logs.read_next(offset).await.unwrap_or_default();
            let offset = from.max(offset);
            if chunk.is_empty() || offset >= end {
                return None;
            }
            chunk.truncate((end - offset) as usize);
            let next = offset + chunk.len() as u64;
            Some((chunk, next))
        }
    }))
}

/// A follower of an API's log: what its newest version's replica writes; it moves on to the
/// new replica when the API is redeployed and ends when the API is deleted.
struct Following {
    name: String,
    live: Arc<LiveApi>,
    replica_id: String,
    events: BoxStream<'static, LogEvent>,
    deployments: Arc<Deployments>,
}

impl Following {
    fn into_stream(self) -> BoxStream<'static, Bytes> {
        Box::pin(futures_util::stream::unfold(self, |mut f| async move {
            let chunk = f.next_chunk().await?;
            Some((chunk, f))
        }))
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            match self.events.next().await? {
                LogEvent::Data(chunk) => return Some(chunk),
                LogEvent::Idle => {}
            }
            // Nothing new: has the API been redeployed or deleted meanwhile?
            let live = self.deployments.get(&self.name)?;
            if Arc::ptr_eq(&live, &self.live) {
                continue;
            }
            self.live = live.clone();
            let Some(replica) = followed_replica(&live) else {
                continue;
            };
            if replica.id() != self.replica_id {
                self.replica_id = replica.id().to_string();
                self.events = follow(replica.logs(), 0, FOLLOW_POLL);
                return Some(Bytes::from(format!(
                    "cortex: {} was redeployed; following its new replica\n",
                    self.name
                )));
            }
        }
    }
}
