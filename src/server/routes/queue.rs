//! The queue behind a job's `sqs_url`, for workers that run elsewhere (the server's own
//! workers are fed directly): `receive` (long poll; leases a batch), `ack`, `nack` and
//! `extend`. Each takes the job's own token (`CORTEX_JOB_TOKEN` of its workers).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::parse_json;
use crate::api::{BatchReceipt, MessageResponse, ReceivedBatch};
use crate::clock::now_ms;
use crate::server::auth::JobAuth;
use crate::server::error::ApiError;
use crate::server::jobs::visibility_ms;
use crate::server::state::AppState;
use crate::store::{batches, jobs};

/// The longest long poll.
const MAX_WAIT_SECONDS: u64 = 20;

#[derive(Debug, serde::Deserialize)]
pub struct ReceiveQuery {
    /// Seconds to wait for a batch when none is ready (0 to 20; default 0).
    #[serde(default)]
    wait_seconds: u64,
}

/// 403 unless the token is this job's; 404 for an unknown job, 409 for one that ended.
async fn check_job(state: &AppState, auth: &JobAuth, job_id: &str) -> Result<(), ApiError> {
    if auth.0.job_id.as_deref() != Some(job_id) {
        return Err(ApiError::Forbidden(format!(
            "this token is not job {job_id}'s; use the CORTEX_JOB_TOKEN its workers were given"
        )));
    }
    let id = job_id.to_string();
    let job = state.store.call(move |c| jobs::get(c, &id)).await?;
    match job {
        None => Err(ApiError::NotFound(format!("there is no job {job_id}"))),
        Some(j) if j.end_ns.is_some() => Err(ApiError::Conflict(format!(
            "job {job_id} ended ({}); it has no batches to give",
            j.status
        ))),
        Some(_) => Ok(()),
    }
}

/// `POST <sqs_url>/receive?wait_seconds=N`: a batch (200), or 204 when none came in time.
pub async fn receive(
    State(state): State<AppState>,
    auth: JobAuth,
    Path(job_id): Path<String>,
    Query(q): Query<ReceiveQuery>,
) -> Result<Response, ApiError> {
    check_job(&state, &auth, &job_id).await?;
    let wait = Duration::from_secs(q.wait_seconds.min(MAX_WAIT_SECONDS));
    let deadline = tokio::time::Instant::now() + wait;
    let visibility = visibility_ms();
    loop {
        let id = job_id.clone();
        let lease = state
            .store
            .call(move |c| batches::lease(c, &id, now_ms(), visibility))
            .await?;
        if let Some(lease) = lease {
            return Ok(Json(ReceivedBatch {
                batch_id: format!("{job_id}-{}", lease.seq),
                receipt: lease.lease_id,
                body: lease.payload,
                receive_count: lease.receive_count,
                visibility_ms: visibility as u64,
            })
            .into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = state.shutdown.cancelled() => return Ok(StatusCode::NO_CONTENT.into_response()),
        }
    }
}

/// The batch's place in its job, from `<job_id>-<n>`.
fn seq_of(job_id: &str, batch_id: &str) -> Result<i64, ApiError> {
    batch_id
        .strip_prefix(job_id)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "batch_id: {batch_id:?} is not a batch of job {job_id} (expected {job_id}-<n>)"
            ))
        })
}

/// What a settle route does with a receipt.
enum Settle {
    Ack,
    Nack,
    Extend,
}

async fn settle(
    state: AppState,
    auth: JobAuth,
    job_id: String,
    body: Bytes,
    how: Settle,
) -> Result<Json<MessageResponse>, ApiError> {
    let r: BatchReceipt = parse_json(&body)?;
    check_job(&state, &auth, &job_id).await?;
    let seq = seq_of(&job_id, &r.batch_id)?;
    let took = r
        .duration_ms
        .map_or(0, |d| i64::try_from(d).unwrap_or(i64::MAX));
    let (id, receipt) = (job_id.clone(), r.receipt.clone());
    let error = r
        .error
        .clone()
        .unwrap_or_else(|| "the worker reported a failure".to_string());
    let (done, verb) = match how {
        Settle::Ack => (
            state
                .store
                .call(move |c| batches::ack(c, &id, seq, &receipt, took))
                .await?,
            "acknowledged",
        ),
        Settle::Nack => (
            state
                .store
                .call(move |c| batches::nack(c, &id, seq, &receipt, &error, took))
                .await?,
            "returned",
        ),
        Settle::Extend => {
            let until = now_ms() + visibility_ms();
            (
                state
                    .store
                    .call(move |c| batches::extend(c, &id, seq, &receipt, until))
                    .await?,
                "extended",
            )
        }
    };
    if !done {
        return Err(ApiError::Conflict(format!(
            "batch {} is no longer leased with this receipt (its lease lapsed and it was delivered again, or it is done)",
            r.batch_id
        )));
    }
    Ok(Json(MessageResponse {
        message: format!("{verb} batch {}", r.batch_id),
    }))
}

/// `POST <sqs_url>/ack`: the batch succeeded.
pub async fn ack(
    State(state): State<AppState>,
    auth: JobAuth,
    Path(job_id): Path<String>,
    body: Bytes,
) -> Result<Json<MessageResponse>, ApiError> {
    settle(state, auth, job_id, body, Settle::Ack).await
}

/// `POST <sqs_url>/nack`: the batch failed this delivery (`error` says why).
pub async fn nack(
    State(state): State<AppState>,
    auth: JobAuth,
    Path(job_id): Path<String>,
    body: Bytes,
) -> Result<Json<MessageResponse>, ApiError> {
    settle(state, auth, job_id, body, Settle::Nack).await
}

/// `POST <sqs_url>/extend`: the worker still works on it.
pub async fn extend(
    State(state): State<AppState>,
    auth: JobAuth,
    Path(job_id): Path<String>,
    body: Bytes,
) -> Result<Json<MessageResponse>, ApiError> {
    settle(state, auth, job_id, body, Settle::Extend).await
}
