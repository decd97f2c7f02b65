//! After a restart: the jobs that had not ended run again, or end saying why they cannot.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{feeding, Jobs};
use crate::server::live_api::LiveApi;
use crate::store::{batches, jobs};

impl Jobs {
    /// Runs again the jobs that had not ended when the server stopped: batches their workers
    /// held go back to the queue (that delivery is not counted) and new workers start. A job
    /// whose API no longer runs ends `status_unexpected_error`.
    pub async fn resume(&self, find: impl Fn(&str) -> Option<Arc<LiveApi>>) {
        // Ids are made from creation times: never again one that was made before the restart
        // (the clock may have been set back).
        match self.shared.store.call(|c| jobs::latest_created_ns(c)).await {
            Ok(latest) => {
                self.last_created_ns.fetch_max(latest, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!("cannot read the latest job's time: {e}"),
        }
        let open = match self.shared.store.call(|c| jobs::unfinished(c)).await {
            Ok(open) => open,
            Err(e) => {
                tracing::error!("cannot list the jobs to resume: {e}");
                return;
            }
        };
        for job in open {
            let id = job.id.clone();
            let released = self
                .shared
                .store
                .call(move |c| batches::release_all(c, &id))
                .await
                .unwrap_or(0);
            let log = self.log_of(&job.api_name, &job.id);
            let template = find(&job.api_name)
                .filter(|_| job.status != crate::batch::status::JobStatus::Enqueuing.as_str())
                .filter(|live| live.model_id == job.model_id)
                .and_then(|live| {
                    let t = live.versions.newest().template().cloned()?;
                    Some((t, feeding(&live.spec)))
                });
            let Some(template) = template else {
                let (status, why) = if job.status
                    == crate::batch::status::JobStatus::Enqueuing.as_str()
                {
                    (
                        crate::batch::status::JobStatus::EnqueueFailed,
                        "the server restarted while the job's files were read; submit the job again".to_string(),
                    )
                } else {
                    (
                        crate::batch::status::JobStatus::UnexpectedError,
                        format!("{} is not running after the server restarted", job.api_name),
                    )
                };
                self.runners.end_unstarted(&log, &job.id, status, why).await;
                continue;
            };
            log.line(format!(
                "the server restarted; resuming job {} ({released} batch(es) in flight go back to the queue)",
                job.id
            ))
            .await;
            let (template, depth) = template;
            self.runners.start(job, template, log, depth);
        }
    }
}
