//! Token checks. Control routes need a user token (`Authorization: Bearer <token>`); a job
//! token there is refused with 401, as is a missing, unknown or expired token. Valid user tokens
//! are remembered by [`super::tokens`], so checks do not wait on the database.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};

use super::error::ApiError;
use super::state::AppState;
use super::tokens::{Identity, JobIdentity, TokenError};
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

/// The `X-API-Key` header Model Bazaar's clients may send instead of a bearer token.
pub const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The user token of a request: its bearer token, or its `X-API-Key` (as Model Bazaar's
/// clients send an API key).
pub fn user_token(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| {
        headers
            .get(&API_KEY)?
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty())
    })
}

/// Whether a request goes on without a caller: the route lets one in without a token
/// (`allowed`: a server on loopback only, or a public API) and the request presents none. A
/// token presented is always checked, on every route: a wrong one is refused, never ignored,
/// and a right one gets what its user may do, not more.
pub fn anonymous(headers: &HeaderMap, allowed: bool) -> bool {
    allowed && user_token(headers).is_none()
}

/// Resolves a user token (bearer or `X-API-Key`) to its user and their teams.
pub async fn identity_from_headers(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Identity, ApiError> {
    let token = user_token(headers).ok_or_else(|| {
        ApiError::Unauthorized(
            "this route needs a token: send `Authorization: Bearer <token>` or `X-API-Key: <token>` (`cortex env token` prints yours)"
                .into(),
        )
    })?;
    state.tokens.identity(token).await.map_err(refused)
}

/// A refused token as the answer: 401, or 500 when the database failed.
fn refused(e: TokenError) -> ApiError {
    match e {
        TokenError::Invalid => ApiError::Unauthorized(
            "the token is not valid (unknown, revoked or expired); check `cortex env list` or get a new token"
                .into(),
        ),
        TokenError::JobTokenOnUserRoute | TokenError::UserTokenOnJobRoute => {
            ApiError::Unauthorized(e.to_string())
        }
        TokenError::Store(e) => e.into(),
    }
}

/// The deployment behind a valid job token (routes a deployment's replicas call).
#[derive(Debug, Clone)]
pub struct JobAuth(pub JobIdentity);

impl FromRequestParts<AppState> for JobAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::Unauthorized(
                "this route needs a job token: send `Authorization: Bearer $CORTEX_JOB_TOKEN`"
                    .into(),
            )
        })?;
        state.tokens.job(token).await.map(JobAuth).map_err(|e| match e {
            TokenError::Invalid => ApiError::Unauthorized(
                "the job token is not valid (unknown, revoked when its deployment stopped, or expired)"
                    .into(),
            ),
            other => refused(other),
        })
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        AuthMember::from_request_parts(parts, state)
            .await
            .map(|AuthMember(identity)| AuthUser(identity.user))
    }
}

/// The caller behind a valid unscoped user token, with their teams: for control routes that
/// check permissions on the apis they touch.
#[derive(Debug, Clone)]
pub struct AuthMember(pub Identity);

impl FromRequestParts<AppState> for AuthMember {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let identity = identity_from_headers(state, &parts.headers).await?;
        if identity.scope.is_some() {
            return Err(ApiError::Forbidden(
                "this token is scoped to one api: it works on that api's predictions and /api/v2/deploy/{model_id} routes only; use an unscoped token here"
                    .into(),
            ));
        }
        Ok(AuthMember(identity))
    }
}

/// The caller behind a valid user token, scoped or not, with their teams: for routes that
/// check permissions on one model.
#[derive(Debug, Clone)]
pub struct AuthCaller(pub Identity);

impl FromRequestParts<AppState> for AuthCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        identity_from_headers(state, &parts.headers)
            .await
            .map(AuthCaller)
    }
}
