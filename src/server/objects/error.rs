//! What can go wrong with an S3 source, as a submitter may hear it: the field, the path, and
//! what to change (or what the operator has to set). Nothing of the server's credentials.

/// Why an S3 source of a submission cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// Not an `s3://bucket/key` this server can ask for (a 400).
    #[error("{field}: {value:?}: {why}")]
    BadPath {
        field: String,
        value: String,
        why: String,
    },
    /// A glob of `includes` or `excludes` (a 400).
    #[error("{field}: {why}")]
    BadGlob { field: String, why: String },
    /// The server has no AWS credentials (a 503).
    #[error("{field}: this server has no S3 access configured; its operator starts `cortex server` with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_REGION, or AWS_ENDPOINT_URL for an S3-compatible store)")]
    NotConfigured { field: String },
    /// The bucket is not there, as far as the server's credentials can tell (a 400).
    #[error("{field}: bucket {bucket:?} does not exist (or the server's S3 credentials cannot see it); check the bucket name")]
    NoSuchBucket { field: String, bucket: String },
    /// The server's credentials may not list or read it (a 403).
    #[error("{field}: the server's S3 credentials may not read s3://{bucket}/; the server's operator grants them read access to the bucket")]
    AccessDenied { field: String, bucket: String },
    /// The store refused the credentials, or could not be reached (a 502).
    #[error("{field}: {why}")]
    Upstream { field: String, why: String },
    /// Nothing matched (a 400).
    #[error("{parent}: {why}")]
    NoMatches { parent: String, why: String },
    /// More files than a job may have (a 400).
    #[error(
        "{parent}: more than {limit} files match; narrow s3_paths, or add includes or excludes"
    )]
    TooMany { parent: String, limit: usize },
}

/// How an [`ObjectError`] is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    BadInput,
    Forbidden,
    Unavailable,
    Upstream,
}

impl ObjectError {
    pub fn class(&self) -> Class {
        match self {
            ObjectError::BadPath { .. }
            | ObjectError::BadGlob { .. }
            | ObjectError::NoSuchBucket { .. }
            | ObjectError::NoMatches { .. }
            | ObjectError::TooMany { .. } => Class::BadInput,
            ObjectError::AccessDenied { .. } => Class::Forbidden,
            ObjectError::NotConfigured { .. } => Class::Unavailable,
            ObjectError::Upstream { .. } => Class::Upstream,
        }
    }

    /// `object_store`'s error of a request about `bucket`, as the submitter hears it (the
    /// store's own words go to the server's log). S3's error code, in the answer's body, says
    /// most: listing errors reach here without a kind of their own.
    pub(super) fn from_store(field: &str, bucket: &str, e: &object_store::Error) -> ObjectError {
        let (field, bucket) = (field.to_string(), bucket.to_string());
        let code = s3_code(e);
        match (code.as_deref(), e) {
            (Some("NoSuchBucket"), _) => ObjectError::NoSuchBucket { field, bucket },
            (Some("AccessDenied" | "AllAccessDisabled"), _)
            | (None, object_store::Error::PermissionDenied { .. }) => {
                ObjectError::AccessDenied { field, bucket }
            }
            (
                Some(
                    "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken"
                    | "InvalidToken" | "TokenRefreshRequired",
                ),
                _,
            )
            | (None, object_store::Error::Unauthenticated { .. }) => ObjectError::Upstream {
                field,
                why: "the S3 store refused the server's credentials; the server's operator checks AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN".to_string(),
            },
            (None, object_store::Error::NotFound { .. }) => {
                ObjectError::NoSuchBucket { field, bucket }
            }
            _ => ObjectError::Upstream {
                field,
                why: format!(
                    "cannot list s3://{bucket}/: the S3 store did not answer as expected; try again, or ask the server's operator (the server's log says why)"
                ),
            },
        }
    }
}

/// The S3 error code (`<Code>NoSuchBucket</Code>`) in an error's chain, if any.
fn s3_code(e: &object_store::Error) -> Option<String> {
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if let Some((_, rest)) = text.split_once("<Code>") {
            if let Some((code, _)) = rest.split_once("</Code>") {
                return Some(code.trim().to_string());
            }
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_error(body: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: format!("Server returned non-2xx status code: 404 Not Found: {body}").into(),
        }
    }

    #[test]
    fn s3s_error_codes_say_what_went_wrong() {
        let code = |c: &str| {
            format!("<?xml version=\"1.0\"?><Error><Code>{c}</Code><Message>m</Message></Error>")
        };
        let of = |c: &str| ObjectError::from_store("f", "b", &store_error(&code(c)));
        assert!(matches!(
            of("NoSuchBucket"),
            ObjectError::NoSuchBucket { .. }
        ));
        assert!(matches!(
            of("AccessDenied"),
            ObjectError::AccessDenied { .. }
        ));
        let e = of("InvalidAccessKeyId");
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        assert_eq!(e.class(), Class::Upstream);
        let e = ObjectError::from_store("f", "b", &store_error("connection refused"));
        assert_eq!(e.class(), Class::Upstream);
        assert!(e.to_string().starts_with("f: cannot list s3://b/"), "{e}");
    }
}
