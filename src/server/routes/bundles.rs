//! `HEAD|PUT /api/v2/bundles/{sha256}`: content-addressed project uploads, bound to the users
//! who uploaded them (`server/bundle_access.rs`).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use crate::api::BundleStored;
use crate::server::auth::AuthMember;
use crate::server::bundle_access;
use crate::server::error::ApiError;
use crate::server::limits::MAX_BUNDLE_BYTES;
use crate::server::state::AppState;
use crate::server::upload::{self, ReceiveError};
use crate::store::bundle_uploaders;
use crate::store::bundles::is_sha256;
use crate::store::StoreError;

fn check_sha(sha: &str) -> Result<(), ApiError> {
    if is_sha256(sha) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{sha:?} is not a SHA-256: use 64 lower-case hex digits"
        )))
    }
}

/// 200 when the caller may use the bundle, 404 when they must upload it: the same 404 for a
/// bundle nobody uploaded and for one only others did.
pub async fn head_bundle(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    Path(sha): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_sha(&sha)?;
    Ok(if bundle_access::check(&state, &caller, &sha).await? {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

/// Stores a bundle and records the caller as one of its uploaders: the body goes to a
/// temporary file, hashed as it arrives, and counts only when its SHA-256 is the one in the
/// path (a bundle stored already, from someone else, is not written again). `created` is from
/// the caller's side: false only when they could already use it.
pub async fn put_bundle(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    Path(sha): Path<String>,
    body: Body,
) -> Result<Json<BundleStored>, ApiError> {
    check_sha(&sha)?;
    state.disk.check()?;
    let usable = bundle_access::check(&state, &caller, &sha).await?;
    let (bundles, s) = (state.bundles.clone(), sha.clone());
    let stored = state.store.call(move |c| bundles.exists(c, &s)).await?;
    let received = upload::receive(body, &state.bundles.upload_dir(), MAX_BUNDLE_BYTES as u64)
        .await
        .map_err(not_received)?;
    let size = received.size;
    if usable {
        return Ok(Json(BundleStored {
            sha256: sha,
            size,
            created: false,
        }));
    }
    let (bundles, s) = (state.bundles.clone(), sha.clone());
    tokio::task::spawn_blocking(move || match stored {
        // Someone else's upload: the bytes sent must be the same before the caller may use it.
        true => crate::store::bundles::same_sha(&received.sha256, &s),
        // Refused here (422), not at deploy: archives that cannot be unpacked safely.
        false => bundles.keep(&s, &received.sha256, received.file),
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| match e {
        StoreError::Conflict(m) => ApiError::Unprocessable(m),
        StoreError::Io(e) if upload::is_disk_full(&e) => disk_full(),
        other => other.into(),
    })?;
    let (bundles, s, user_id) = (state.bundles.clone(), sha.clone(), caller.user.id.clone());
    state
        .store
        .call(move |c| {
            bundles.record(c, &s, size)?;
            bundle_uploaders::add(c, &s, &user_id)
        })
        .await?;
    Ok(Json(BundleStored {
        sha256: sha,
        size,
        created: true,
    }))
}

fn not_received(e: ReceiveError) -> ApiError {
    match e {
        ReceiveError::TooLarge(max) => ApiError::PayloadTooLarge(format!(
            "the bundle is larger than {} MiB; leave large files out of the project (.cortexignore) and load them at start-up",
            max >> 20
        )),
        ReceiveError::Read(e) => ApiError::BadRequest(format!("the upload could not be read: {e}")),
        ReceiveError::Write(e) if upload::is_disk_full(&e) => disk_full(),
        ReceiveError::Write(e) => {
            tracing::error!("cannot write an upload: {e}");
            ApiError::Internal("the upload could not be written to the server's disk".into())
        }
    }
}

fn disk_full() -> ApiError {
    ApiError::InsufficientStorage(
        "the server's disk is full; nothing was stored: free some space and try again".into(),
    )
}
