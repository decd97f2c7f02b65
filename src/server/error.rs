//! Errors the server answers with, as data; each maps to an honest status code and a
//! `{"kind", "message"}` body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::ErrorBody;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    BadGateway(String),
    /// The server cannot do it as it is configured (a 503 that waiting does not cure).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::InvalidConfig(_) => (StatusCode::BAD_REQUEST, "invalid_config"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Forbidden(m) => ApiError::Forbidden(m),
            StoreError::Unprocessable(m) => ApiError::Unprocessable(m),
            // The transaction that hit it was rolled back: nothing half-written stays.
            StoreError::Sqlite(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) => {
                ApiError::InsufficientStorage(format!(
                    "the server's disk is full ({e}); nothing was stored: free some space and try again"
                ))
            }
            StoreError::Sqlite(e) if damaged(&e) => {
                tracing::error!("store: {e}");
                ApiError::Internal(format!(
                    "the server's database (cortex.db in its data directory) is damaged ({e}); nothing was stored: the server's operator must stop it and restore cortex.db from a backup (sqlite3's .recover saves what is still readable)"
                ))
            }
            StoreError::Sqlite(e) if unwritable(&e) => {
                tracing::error!("store: {e}");
                ApiError::Internal(format!(
                    "the server cannot write its database ({e}); nothing was stored: its data directory is read-only or its disk is failing, which the server's operator must mend"
                ))
            }
            other => {
                tracing::error!("store: {other}");
                ApiError::Internal(other.to_string())
            }
        }
    }
}

fn damaged(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

fn unwritable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::ReadOnly | ErrorCode::SystemIoFailure | ErrorCode::CannotOpen)
    )
}

impl From<crate::server::versions::VersionError> for ApiError {
    fn from(e: crate::server::versions::VersionError) -> Self {
        match e {
            crate::server::versions::VersionError::Store(e) => e.into(),
            crate::server::versions::VersionError::Unpackable(_) => {
                ApiError::Unprocessable(e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A JSON error response, for places that build responses by hand (the gateway).
pub fn error_response(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            kind: kind.to_string(),
            message: message.into(),
        }),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        // What the operator must act on is in the server's log too, not only the client's.
        if matches!(
            self,
            ApiError::InsufficientStorage(_) | ApiError::Internal(_)
        ) {
            tracing::warn!("answered {}: {self}", status.as_u16());
        }
        error_response(status, kind, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    #[test]
    fn a_damaged_or_unwritable_database_says_what_the_operator_must_do() {
        let ApiError::Internal(m) = ApiError::from(sqlite(rusqlite::ffi::SQLITE_CORRUPT)) else {
            panic!("not internal");
        };
        assert!(
            m.contains("is damaged") && m.contains("restore cortex.db from a backup"),
            "{m}"
        );
        let ApiError::Internal(m) = ApiError::from(sqlite(rusqlite::ffi::SQLITE_READONLY)) else {
            panic!("not internal");
        };
        assert!(
            m.contains("cannot write its database") && m.contains("nothing was stored"),
            "{m}"
        );
        assert!(matches!(
            ApiError::from(sqlite(rusqlite::ffi::SQLITE_FULL)),
            ApiError::InsufficientStorage(_)
        ));
    }
}
