//! The Ray cluster's HTTP API (its dashboard port): the Jobs API to run a group's driver, the
//! State API to list nodes. Plain HTTP with the cluster's token; no Python, no Ray Client.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a call to the cluster failed, said so that an operator knows what to change.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach the Ray cluster at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the Ray cluster at {url} refused the token (HTTP {status}); give the cluster's token with --ray-token-file")]
    Refused { url: String, status: u16 },
    #[error("the Ray cluster answered {what} with HTTP {status}: {body}")]
    Answered {
        what: String,
        status: u16,
        body: String,
    },
    #[error("the Ray cluster's answer to {what} is not what Ray {expected} sends: {detail}")]
    Unexpected {
        what: String,
        expected: &'static str,
        detail: String,
    },
}

/// A client of one cluster's dashboard API.
#[derive(Debug, Clone)]
pub struct ClusterApi {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// A job to submit: one group's driver.
#[derive(Debug, Clone, Serialize)]
pub struct JobSubmission {
    pub submission_id: String,
    pub entrypoint: String,
    pub runtime_env: serde_json::Value,
    pub metadata: std::collections::BTreeMap<String, String>,
    pub entrypoint_num_cpus: f64,
}

/// What Ray says of a job.
#[derive(Debug, Clone, Deserialize)]
pub struct JobInfo {
    /// `PENDING`, `RUNNING`, `STOPPED`, `SUCCEEDED` or `FAILED`.
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
}

impl JobInfo {
    /// The job has ended (its driver is gone).
    pub fn ended(&self) -> bool {
        matches!(self.status.as_str(), "STOPPED" | "SUCCEEDED" | "FAILED")
    }
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NodeInfo {
    pub node_id: String,
    #[serde(default)]
    pub node_ip: String,
    /// `ALIVE` or `DEAD`.
    pub state: String,
}

impl ClusterApi {
    /// A client of the dashboard at `base` (`http://HEAD:8265`) with the cluster's `token`.
    pub fn new(base: &str, token: &str) -> ClusterApi {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .no_proxy()
            .build()
            .unwrap_or_default();
        ClusterApi {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        }
    }

    /// The dashboard's address, for messages.
    pub fn address(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClusterError> {
        let resp = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| ClusterError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(resp),
            401 | 403 => Err(ClusterError::Refused {
                url: self.base.clone(),
                status,
            }),
            _ => {
                let body = resp.text().await.unwrap_or_default();
                // Ray answers some errors with a whole Python traceback: its last line says it.
                let last = body.trim().lines().last().unwrap_or("").chars().take(300);
                Err(ClusterError::Answered {
                    what: what.to_string(),
                    status,
                    body: last.collect(),
                })
            }
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        what: &str,
        resp: reqwest::Response,
    ) -> Result<T, ClusterError> {
        let bytes = resp.bytes().await.map_err(|e| ClusterError::Unexpected {
            what: what.to_string(),
            expected: "2.x",
            detail: e.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ClusterError::Unexpected {
            what: what.to_string(),
            expected: "2.x",
            detail: e.to_string(),
        })
    }

    /// Ray's version (checks that the address and token work).
    pub async fn version(&self) -> Result<String, ClusterError> {
        #[derive(Deserialize)]
        struct Version {
            ray_version: String,
        }
        let what = "GET /api/version";
        let resp = self
            .call(what, self.http.get(format!("{}/api/version", self.base)))
            .await?;
        Ok(Self::json::<Version>(what, resp).await?.ray_version)
    }

    /// Submits a job; returns its submission id.
    pub async fn submit(&self, job: &JobSubmission) -> Result<String, ClusterError> {
        #[derive(Deserialize)]
        struct Submitted {
            submission_id: String,
        }
        let what = "POST /api/jobs/";
        let resp = self
            .call(
                what,
                self.http.post(format!("{}/api/jobs/", self.base)).json(job),
            )
            .await?;
        Ok(Self::json::<Submitted>(what, resp).await?.submission_id)
    }

    /// A job's status.
    pub async fn job(&self, submission_id: &str) -> Result<JobInfo, ClusterError> {
        let what = format!("GET /api/jobs/{submission_id}");
        let resp = self
            .call(
                &what,
                self.http
                    .get(format!("{}/api/jobs/{submission_id}", self.base)),
            )
            .await?;
        Self::json(&what, resp).await
    }

    /// Asks a job to stop (its driver gets SIGTERM; the actors it made stay).
    pub async fn stop_job(&self, submission_id: &str) -> Result<(), ClusterError> {
        let what = format!("POST /api/jobs/{submission_id}/stop");
        self.call(
            &what,
            self.http
                .post(format!("{}/api/jobs/{submission_id}/stop", self.base)),
        )
        .await
        .map(drop)
    }

    /// Every node the cluster knows, alive or dead.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        #[derive(Deserialize)]
        struct Outer {
            data: Data,
        }
        #[derive(Deserialize)]
        struct Data {
            result: Listing,
        }
        #[derive(Deserialize)]
        struct Listing {
            result: Vec<NodeInfo>,
        }
        let what = "GET /api/v0/nodes";
        let resp = self
            .call(
                what,
                self.http
                    .get(format!("{}/api/v0/nodes?limit=1000", self.base)),
            )
            .await?;
        Ok(Self::json::<Outer>(what, resp).await?.data.result.result)
    }
}
