//! S3 (and S3-compatible stores) for job inputs: `delimited_files.s3_paths` and
//! `file_path_lister`. The server reads with its own credentials and endpoint, from its
//! environment (`config.rs`); a submission names buckets and keys only (`path.rs` checks
//! them before any request), and `glob.rs` keeps the files its `includes` and `excludes`
//! select. Listing pages through the bucket under each prefix; objects are read as streams.
//! The requests themselves (signing, XML, retries) are `object_store`'s.

mod config;
mod error;
mod glob;
mod path;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::{BackoffConfig, ClientOptions, ObjectStoreExt, RetryConfig};

pub use config::{ConfigError, S3Config};
pub use error::{Class, ObjectError};
pub use glob::{BadGlob, Filter};
pub use path::S3Path;

/// Keys one listing may go through before it is refused as too broad.
const MAX_SCANNED: usize = 1_000_000;
/// How long one list request may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a read may wait for the next bytes of an object.
const READ_STALL: Duration = Duration::from_secs(60);
/// Buckets whose clients are kept (each holds its own connection pool).
const MAX_CLIENTS: usize = 64;
/// Keys per list request (S3's most); `CORTEX_S3_LIST_PAGE` makes it smaller (the tests
/// use it to go through several pages).
const LIST_PAGE: usize = 1000;

/// A stream of an object's bytes.
pub type ObjectReader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

/// The server's S3 access (none when its environment holds no AWS credentials).
pub struct S3Access {
    config: Option<S3Config>,
    clients: Mutex<HashMap<String, Arc<AmazonS3>>>,
    page: usize,
}

impl S3Access {
    pub fn new(config: Option<S3Config>) -> S3Access {
        S3Access {
            config,
            clients: Mutex::new(HashMap::new()),
            page: LIST_PAGE,
        }
    }

    /// From the server's environment (`AWS_*`, and `CORTEX_S3_LIST_PAGE`).
    pub fn from_env() -> Result<S3Access, ConfigError> {
        let mut access = S3Config::from_vars(|name| std::env::var(name).ok()).map(S3Access::new)?;
        if let Some(page) = std::env::var("CORTEX_S3_LIST_PAGE")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            access.page = page.clamp(1, LIST_PAGE);
        }
        Ok(access)
    }

    pub fn config(&self) -> Option<&S3Config> {
        self.config.as_ref()
    }

    /// The client for `bucket` (`field` names the submission's path in errors).
    fn client(&self, field: &str, bucket: &str) -> Result<Arc<AmazonS3>, ObjectError> {
        let config = self
            .config
            .as_ref()
            .ok_or_else(|| ObjectError::NotConfigured {
                field: field.to_string(),
            })?;
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(bucket) {
            return Ok(client.clone());
        }
        let client = Arc::new(build(config, bucket).map_err(|e| {
            tracing::warn!("cannot make an S3 client for bucket {bucket}: {e}");
            ObjectError::Upstream {
                field: field.to_string(),
                why: "the server cannot use its S3 configuration; ask its operator (the server's log says why)".to_string(),
            }
        })?);
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(bucket.to_string(), client.clone());
        Ok(client)
    }

    /// The keys of the non-empty objects under `path` (`field` in errors) whose
    /// `s3://bucket/key` `filter` keeps, in the store's order, page by page; at most `limit` of them (more is
    /// [`ObjectError::TooMany`], reported for `parent`).
    pub async fn list(
        &self,
        (parent, field): (&str, &str),
        path: &S3Path,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<String>, ObjectError> {
        let client = self.client(field, &path.bucket)?;
        let prefix = (!path.prefix.is_empty()).then_some(path.prefix.as_str());
        let (mut keys, mut scanned, mut page_token) = (Vec::new(), 0usize, None);
        loop {
            let opts = PaginatedListOptions {
                page_token: page_token.take(),
                max_keys: Some(self.page),
                ..Default::default()
            };
            let page = tokio::time::timeout(LIST_TIMEOUT, client.list_paginated(prefix, opts))
                .await
                .map_err(|_| ObjectError::Upstream {
                    field: field.to_string(),
                    why: format!(
                        "listing s3://{}/ took more than {}s; try again",
                        path.bucket,
                        LIST_TIMEOUT.as_secs()
                    ),
                })?
                .map_err(|e| {
                    tracing::warn!("cannot list s3://{}/{}: {e}", path.bucket, path.prefix);
                    ObjectError::from_store(field, &path.bucket, &e)
                })?;
            for object in &page.result.objects {
                scanned += 1;
                // Empty objects hold no items, and the folder markers S3 consoles make
                // (`dir/`, listed without their `/`) cannot be read back: both are skipped.
                if object.size == 0 {
                    continue;
                }
                let key = object.location.as_ref();
                if filter.keeps(&format!("s3://{}/{key}", path.bucket)) {
                    if keys.len() == limit {
                        return Err(ObjectError::TooMany {
                            parent: parent.to_string(),
                            limit,
                        });
                    }
                    keys.push(key.to_string());
                }
            }
            if scanned > MAX_SCANNED {
                return Err(ObjectError::TooMany {
                    parent: parent.to_string(),
                    limit: MAX_SCANNED,
                });
            }
            match page.page_token {
                Some(token) => page_token = Some(token),
                None => return Ok(keys),
            }
        }
    }

    /// The object `key` of `bucket`, as a stream; a read that waits more than a minute for
    /// bytes fails. The error is what a submitter may hear.
    pub async fn open(&self, bucket: &str, key: &str) -> Result<ObjectReader, String> {
        let name = format!("s3://{bucket}/{key}");
        let client = self.client(&name, bucket).map_err(|e| e.to_string())?;
        let location = object_store::path::Path::parse(key)
            .map_err(|e| format!("{name}: cannot read it: {e}"))?;
        let got = client.get(&location).await.map_err(|e| {
            tracing::warn!("cannot read {name}: {e}");
            match e {
                object_store::Error::NotFound { .. } => {
                    format!("{name}: it is gone (deleted since the job was submitted)")
                }
                other => ObjectError::from_store(&name, bucket, &other)
                    .to_string()
                    .replace("cannot list", "cannot read"),
            }
        })?;
        let bytes = got.into_stream().map_err(std::io::Error::other);
        let guarded = futures_util::stream::unfold(bytes, |mut bytes| async move {
            match tokio::time::timeout(READ_STALL, bytes.next()).await {
                Ok(Some(chunk)) => Some((chunk, bytes)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no bytes came for a minute",
                    )),
                    bytes,
                )),
            }
        });
        Ok(Box::new(tokio_util::io::StreamReader::new(Box::pin(
            guarded,
        ))))
    }
}

/// A client for one bucket: the operator's credentials, region and endpoint (path-style,
/// http allowed when the endpoint is http), bounded retries, no total time limit on a
/// request (objects may be large; reads have their own stall limit).
fn build(config: &S3Config, bucket: &str) -> object_store::Result<AmazonS3> {
    let mut options = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout_disabled();
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&config.region)
        .with_access_key_id(&config.access_key_id)
        .with_secret_access_key(&config.secret_access_key)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: Duration::from_secs(20),
        });
    if let Some(token) = &config.session_token {
        builder = builder.with_token(token);
    }
    if let Some(endpoint) = &config.endpoint {
        options = options.with_allow_http(endpoint.scheme() == "http");
        builder = builder
            .with_endpoint(endpoint.as_str().trim_end_matches('/'))
            .with_virtual_hosted_style_request(false);
    }
    builder.with_client_options(options).build()
}
