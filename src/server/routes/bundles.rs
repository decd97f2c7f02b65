//! `HEAD|PUT /api/v2/bundles/{sha256}`: content-addressed project uploads, bound to the users
//! who uploaded them (`server/bundle_access.rs`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sha2::{Digest, Sha256};

use crate::api::BundleStored;
use crate::server::auth::AuthMember;
use crate::server::bundle_access;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::store::bundle_uploaders;
use crate::store::bundles::is_sha256;

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

/// Stores the bundle (unless it is stored already) and records the caller as one of its
/// uploaders once the bytes they sent hash to `sha`. `created` is from the caller's side:
/// false only when they could already use it.
pub async fn put_bundle(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    Path(sha): Path<String>,
    body: Bytes,
) -> Result<Json<BundleStored>, ApiError> {
    check_sha(&sha)?;
    let size = body.len() as u64;
    if bundle_access::check(&state, &caller, &sha).await? {
        return Ok(Json(BundleStored {
            sha256: sha,
            size,
            created: false,
        }));
    }
    let (bundles, s) = (state.bundles.clone(), sha.clone());
    let stored = state.store.call(move |c| bundles.exists(c, &s)).await?;
    // Hashing, checking and writing happen off the database connection.
    let (bundles, s) = (state.bundles.clone(), sha.clone());
    tokio::task::spawn_blocking(move || match stored {
        // Someone else's upload: these bytes must be the same before the caller may use it.
        true => same_bytes(&s, &body),
        false => bundles.write(&s, &body),
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| match e {
        crate::store::StoreError::Conflict(m) => ApiError::Unprocessable(m),
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

/// Checks that `bytes` hash to `sha`, with the answer `BundleStore::write` gives.
fn same_bytes(sha: &str, bytes: &[u8]) -> Result<(), crate::store::StoreError> {
    let actual = hex::encode(Sha256::digest(bytes));
    if actual == sha {
        return Ok(());
    }
    Err(crate::store::StoreError::Conflict(format!(
        "the bundle's SHA-256 is {actual}, not {sha}; the upload was corrupted, run the command again"
    )))
}
