//! Token checks. Control routes need a user token (`Authorization: Bearer <token>`); a job
//! token there is refused with 401, as is a missing, unknown or expired token. Valid user tokens
//! are remembered by [`super::tokens`], so checks do not wait on the database.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::error::ApiError;
use super::state::AppState;
use super::tokens::TokenError;
use crate::store::UserRow;

/// The user behind a valid user token.
#[derive(Debug, Clone)]
pub struct AuthUser(pub UserRow);

/// The bearer token of a request, if it sent one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Resolves a user token to its user.
pub async fn user_from_headers(state: &AppState, headers: &HeaderMap) -> Result<UserRow, ApiError> {
    let token = bearer(headers).ok_or_else(|| {
        ApiError::Unauthorized(
            "this route needs a token: send `Authorization: Bearer <token>` (`cortex env token` prints yours)"
                .into(),
        )
    })?;
    state.tokens.user(token).await.map_err(|e| match e {
        TokenError::Invalid => ApiError::Unauthorized(
            "the token is not valid (unknown, revoked or expired); check `cortex env list` or get a new token"
                .into(),
        ),
        TokenError::JobTokenOnUserRoute => ApiError::Unauthorized(e.to_string()),
        TokenError::Store(e) => e.into(),
    })
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        user_from_headers(state, &parts.headers).await.map(AuthUser)
    }
}
