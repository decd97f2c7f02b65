//! `HEAD|PUT /api/v2/bundles/{sha256}`: content-addressed project uploads.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use crate::api::BundleStored;
use crate::server::auth::AuthUser;
use crate::server::error::ApiError;
use crate::server::state::AppState;
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

/// 200 when the server has the bundle, 404 when it must be uploaded.
pub async fn head_bundle(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(sha): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_sha(&sha)?;
    let bundles = state.bundles.clone();
    let exists = state.store.call(move |c| bundles.exists(c, &sha)).await?;
    Ok(if exists {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

pub async fn put_bundle(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(sha): Path<String>,
    body: Bytes,
) -> Result<Json<BundleStored>, ApiError> {
    check_sha(&sha)?;
    state.disk.check()?;
    let size = body.len() as u64;
    let (bundles, s) = (state.bundles.clone(), sha.clone());
    let exists = state.store.call(move |c| bundles.exists(c, &s)).await?;
    if !exists {
        // Hashing, checking and writing happen off the database connection.
        let (bundles, s) = (state.bundles.clone(), sha.clone());
        tokio::task::spawn_blocking(move || {
            bundles.write(&s, &body)?;
            // Refused here (422), not at deploy: archives that cannot be unpacked safely.
            bundles.check_stored(&s)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(m) => ApiError::Unprocessable(m),
            other => other.into(),
        })?;
        let (bundles, s) = (state.bundles.clone(), sha.clone());
        state
            .store
            .call(move |c| bundles.record(c, &s, size))
            .await?;
    }
    Ok(Json(BundleStored {
        sha256: sha,
        size,
        created: !exists,
    }))
}
