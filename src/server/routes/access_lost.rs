//! A followed log is read for as long as its caller may read it: a stream ends once the
//! caller's token is revoked or expired, the user deleted, or read access on the API taken
//! away, as a new request would be refused then. Checked every [`RECHECK`].

use std::time::Duration;

use axum::http::HeaderMap;

use crate::server::access::Level;
use crate::server::auth::identity_from_headers;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::store::models;

/// How often an open stream's caller is checked again.
const RECHECK: Duration = Duration::from_secs(2);

/// Resolves once the caller behind `headers` may no longer read model `model_id` (it was
/// deleted too). A check the database cannot answer now counts as passed: the next decides.
pub(super) async fn access_lost(state: AppState, headers: HeaderMap, model_id: String) {
    loop {
        tokio::time::sleep(RECHECK).await;
        if lost(&state, &headers, &model_id).await {
            return;
        }
    }
}

async fn lost(state: &AppState, headers: &HeaderMap, model_id: &str) -> bool {
    let refused = |e: &ApiError| {
        matches!(
            e,
            ApiError::Unauthorized(_) | ApiError::Forbidden(_) | ApiError::NotFound(_)
        )
    };
    let identity = match identity_from_headers(state, headers).await {
        Ok(identity) => identity,
        Err(e) => return refused(&e),
    };
    let id = model_id.to_string();
    match state.store.call(move |c| models::get(c, &id)).await {
        Ok(Some(row)) => super::require(&identity, &row, Level::Read).is_err(),
        Ok(None) => true,
        Err(_) => false,
    }
}
