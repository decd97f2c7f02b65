//! What a wait makes of one answer of the server: done, still waiting (and on what), or failed
//! (and why). Pure: the polling loop in `wait/mod.rs` asks, the reports print.
//!
//! The rule. An API is done when its status is `live` and the version that is live is the one
//! the wait is for: a deploy records each API's deployment number before it sends the new
//! configuration, and an API whose number is still that one is still the old version
//! (whatever it says). The number usually counts one up; a deploy that goes back to the
//! version still serving during an update makes that version's number current again, which
//! is a change all the same; seen after the deploy took effect, the number from before means
//! another deploy replaced this one (it fails then). It fails at once when it is `error`, `error (out of memory)` or
//! `stopped`: a failed `__init__` (a python exception, a command exiting 3), a crash loop or a
//! memory kill will not mend themselves. `updating` and `compute unavailable` are waited on
//! (compute may free up) until the timeout, except a `compute unavailable` whose errors say
//! a replica asks for more than the machine has ([`NEVER_FITS`]): that fails at once. A job is done when it ended: `status_succeeded`
//! is success, every other end (`status_completed_with_failures` included) is a failure.

use crate::api::{ApiKind, ApiResponse, ApiStatus, JobStatus, ReplicaPhase, NEVER_FITS};
use crate::batch::status::JobStatus as Status;

/// Where a wait stands after one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Live (an API), or succeeded (a job).
    Done,
    /// Not there yet; what it is now, in words (`updating: 0 of 1 replicas ready`).
    Waiting(String),
    /// It will not get there by itself; its status in words (`error (out of memory)`).
    Failed(String),
}

/// An API's verdict; `before`: the deployment number it had before the deploy being waited
/// for (`None`: whatever version it runs); `moved`: an earlier answer had another number (the
/// deploy took effect), so `before` again means another deploy put that version back.
pub fn api(api: &ApiResponse, before: Option<i64>, moved: bool) -> Verdict {
    if before.is_some_and(|n| api.deployment.number == n) {
        if moved {
            return Verdict::Failed(
                "replaced by another deploy, which put back the version that served before this one"
                    .to_string(),
            );
        }
        return Verdict::Waiting("still the version from before this deploy".to_string());
    }
    match api.status {
        ApiStatus::Live if serves(api) => Verdict::Done,
        ApiStatus::Live | ApiStatus::Updating => Verdict::Waiting(format!(
            "updating: {} of {} replicas ready",
            api.up_to_date, api.requested
        )),
        ApiStatus::ComputeUnavailable if api.errors.iter().any(|e| e.contains(NEVER_FITS)) => {
            Verdict::Failed(api.status.message().to_string())
        }
        ApiStatus::ComputeUnavailable => Verdict::Waiting(
            "compute unavailable: its replicas wait for free cpu or memory on the server"
                .to_string(),
        ),
        status @ (ApiStatus::Error | ApiStatus::ErrorOutOfMemory | ApiStatus::Stopped) => {
            Verdict::Failed(status.message().to_string())
        }
    }
}

/// Whether a live API's newest version serves: a replica of it is ready, or it needs none (a
/// BatchAPI, a TrafficSplitter, or a RealtimeAPI scaled to zero).
fn serves(api: &ApiResponse) -> bool {
    api.kind != ApiKind::RealtimeAPI
        || api.requested == 0
        || api
            .replicas
            .iter()
            .any(|r| r.up_to_date && r.phase == ReplicaPhase::Ready)
}

/// A job's verdict.
pub fn job(job: &JobStatus) -> Verdict {
    let words = |s: &str| Status::parse(s).map_or(s.to_string(), |s| s.message().to_string());
    match Status::parse(&job.status) {
        Some(Status::Succeeded) => Verdict::Done,
        Some(s) if !s.is_terminal() => {
            let m = &job.batch_metrics;
            Verdict::Waiting(format!(
                "{}: {} of {} batches done",
                s.message(),
                m.succeeded + m.failed,
                m.total
            ))
        }
        // A status this cli does not know yet counts as ended once the job has an end time.
        None if job.end_time.is_none() => Verdict::Waiting(words(&job.status)),
        _ => Verdict::Failed(words(&job.status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realtime(status: ApiStatus, number: i64, ready: bool) -> ApiResponse {
        let text = include_str!("testdata/api.json");
        let mut api: ApiResponse = serde_json::from_str(text).unwrap();
        api.status = status;
        api.deployment.number = number;
        api.replicas[0].phase = if ready {
            ReplicaPhase::Ready
        } else {
            ReplicaPhase::Initializing
        };
        api.up_to_date = ready as u32;
        api
    }

    #[test]
    fn an_api_is_done_when_the_new_version_is_live() {
        assert_eq!(
            api(&realtime(ApiStatus::Live, 2, true), Some(1), false),
            Verdict::Done
        );
        assert_eq!(
            api(&realtime(ApiStatus::Live, 2, true), None, false),
            Verdict::Done
        );
        // The old version is still what the server describes.
        assert!(matches!(
            api(&realtime(ApiStatus::Live, 1, true), Some(1), false),
            Verdict::Waiting(_)
        ));
        // ... but once another number was seen, another deploy has put it back.
        assert!(matches!(
            api(&realtime(ApiStatus::Live, 1, true), Some(1), true),
            Verdict::Failed(why) if why.starts_with("replaced by another deploy")
        ));
        // Back to the version that still served during an update (2 was the update).
        assert_eq!(
            api(&realtime(ApiStatus::Live, 1, true), Some(2), false),
            Verdict::Done
        );
        assert_eq!(
            api(&realtime(ApiStatus::Updating, 2, false), Some(1), false),
            Verdict::Waiting("updating: 0 of 1 replicas ready".to_string())
        );
    }

    #[test]
    fn errors_and_stops_fail_at_once_and_compute_is_waited_for() {
        for (status, words) in [
            (ApiStatus::Error, "error"),
            (ApiStatus::ErrorOutOfMemory, "error (out of memory)"),
            (ApiStatus::Stopped, "stopped"),
        ] {
            assert_eq!(
                api(&realtime(status, 2, false), Some(1), false),
                Verdict::Failed(words.to_string())
            );
        }
        assert!(matches!(
            api(&realtime(ApiStatus::ComputeUnavailable, 2, false), None, false),
            Verdict::Waiting(w) if w.starts_with("compute unavailable")
        ));
    }

    #[test]
    fn compute_the_machine_can_never_give_fails_at_once() {
        let mut wants = realtime(ApiStatus::ComputeUnavailable, 2, false);
        wants.errors = vec![
            "waiting for compute: it needs 1 gpu (compute.gpu) while 0 of this machine's 0 are \
             free; it can never start here; lower compute in cortex.yaml"
                .to_string(),
        ];
        assert_eq!(
            api(&wants, Some(1), false),
            Verdict::Failed("compute unavailable".to_string())
        );
    }

    #[test]
    fn a_job_succeeds_or_fails_once_it_ended() {
        let text = include_str!("testdata/job.json");
        let mut j: JobStatus = serde_json::from_str(text).unwrap();
        assert_eq!(
            job(&j),
            Verdict::Waiting("running: 1 of 3 batches done".to_string())
        );
        j.status = "status_succeeded".to_string();
        assert_eq!(job(&j), Verdict::Done);
        j.status = "status_completed_with_failures".to_string();
        assert_eq!(
            job(&j),
            Verdict::Failed("completed with failures".to_string())
        );
    }
}
