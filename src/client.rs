//! Typed HTTP client for the control API; the CLI's only way to the server.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::api::{
    AccessInfo, ApiResponse, BundleStored, CreateTeam, CreateToken, CreateUser, CreatedToken,
    CreatedUser, DeployRequest, DeployResult, ErrorBody, Health, JobList, JobStatusResponse,
    MessageResponse, ServerInfo, SetAccess, SetMember, TeamInfo, TokenInfo, UserInfo,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{message}")]
    Api {
        status: StatusCode,
        kind: String,
        message: String,
    },
    #[error("cannot reach the cortex server at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("unexpected answer from the cortex server at {url}: {detail}")]
    Protocol { url: String, detail: String },
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A connection to one cortex server with one token.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if is_loopback(base) {
            // An HTTP(S)_PROXY meant for the outside world must not see local traffic.
            builder = builder.no_proxy();
        }
        let http = builder.build().unwrap_or_default();
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req
    }

    async fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => ClientError::Api {
                status,
                kind: e.kind,
                message: e.message,
            },
            Err(_) => ClientError::Api {
                status,
                kind: "http".to_string(),
                message: format!(
                    "the server answered {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                ),
            },
        })
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
            url: self.base.clone(),
            detail: e.to_string(),
        })
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json(
            self.request(Method::GET, "/healthz")
                .timeout(Duration::from_secs(2)),
        )
        .await
    }

    pub async fn info(&self) -> Result<ServerInfo, ClientError> {
        self.json(self.request(Method::GET, "/api/v2/info")).await
    }

    /// Whether the server already has the bundle with this SHA-256.
    pub async fn has_bundle(&self, sha256: &str) -> Result<bool, ClientError> {
        let path = format!("/api/v2/bundles/{sha256}");
        match self.send(self.request(Method::HEAD, &path)).await {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Uploads a bundle; `body` may be a stream (to show progress).
    pub async fn put_bundle(
        &self,
        sha256: &str,
        body: reqwest::Body,
    ) -> Result<BundleStored, ClientError> {
        let path = format!("/api/v2/bundles/{sha256}");
        self.json(
            self.request(Method::PUT, &path)
                .header(reqwest::header::CONTENT_TYPE, "application/gzip")
                .body(body),
        )
        .await
    }

    pub async fn deploy(&self, req: &DeployRequest) -> Result<Vec<DeployResult>, ClientError> {
        self.json(self.request(Method::POST, "/api/v2/apis").json(req))
            .await
    }

    pub async fn list_apis(&self) -> Result<Vec<ApiResponse>, ClientError> {
        self.json(self.request(Method::GET, "/api/v2/apis")).await
    }

    /// `POST`s `body` (JSON) to an API's `endpoint` with this client's token; the answer's
    /// status and body, whatever the status.
    pub async fn predict(
        &self,
        endpoint: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, bytes::Bytes), ClientError> {
        let mut req = self
            .http
            .post(endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let unreachable = |source| ClientError::Unreachable {
            url: endpoint.to_string(),
            source,
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(unreachable)?;
        Ok((status, body))
    }

    /// Starts every replica of a RealtimeAPI again, with a rolling update.
    pub async fn refresh_api(&self, name: &str) -> Result<MessageResponse, ClientError> {
        self.json(self.request(
            Method::POST,
            &format!("/api/v2/apis/{}/refresh", segment(name)),
        ))
        .await
    }

    pub async fn get_api(&self, name: &str) -> Result<ApiResponse, ClientError> {
        self.json(self.request(Method::GET, &format!("/api/v2/apis/{}", segment(name))))
            .await
    }

    /// Deletes an API; `force` even when a TrafficSplitter uses it.
    pub async fn delete_api(
        &self,
        name: &str,
        force: bool,
    ) -> Result<MessageResponse, ClientError> {
        self.json(
            self.request(Method::DELETE, &format!("/api/v2/apis/{}", segment(name)))
                .query(&[("force", force)]),
        )
        .await
    }

    pub async fn list_users(&self) -> Result<Vec<UserInfo>, ClientError> {
        self.json(self.request(Method::GET, "/api/v2/users")).await
    }

    pub async fn create_user(&self, req: &CreateUser) -> Result<CreatedUser, ClientError> {
        self.json(self.request(Method::POST, "/api/v2/users").json(req))
            .await
    }

    pub async fn delete_user(&self, username: &str) -> Result<MessageResponse, ClientError> {
        self.json(self.request(Method::DELETE, &format!("/api/v2/users/{username}")))
            .await
    }

    pub async fn list_teams(&self) -> Result<Vec<TeamInfo>, ClientError> {
        self.json(self.request(Method::GET, "/api/v2/teams")).await
    }

    pub async fn create_team(&self, req: &CreateTeam) -> Result<TeamInfo, ClientError> {
        self.json(self.request(Method::POST, "/api/v2/teams").json(req))
            .await
    }

    pub async fn delete_team(&self, name: &str) -> Result<MessageResponse, ClientError> {
        self.json(self.request(Method::DELETE, &format!("/api/v2/teams/{name}")))
            .await
    }

    pub async fn set_member(
        &self,
        team: &str,
        username: &str,
        req: &SetMember,
    ) -> Result<TeamInfo, ClientError> {
        let path = format!("/api/v2/teams/{team}/members/{username}");
        self.json(self.request(Method::PUT, &path).json(req)).await
    }

    pub async fn remove_member(&self, team: &str, username: &str) -> Result<TeamInfo, ClientError> {
        let path = format!("/api/v2/teams/{team}/members/{username}");
        self.json(self.request(Method::DELETE, &path)).await
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.json(self.request(Method::GET, "/api/v2/tokens")).await
    }

    pub async fn create_token(&self, req: &CreateToken) -> Result<CreatedToken, ClientError> {
        self.json(self.request(Method::POST, "/api/v2/tokens").json(req))
            .await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<MessageResponse, ClientError> {
        self.json(self.request(Method::DELETE, &format!("/api/v2/tokens/{id}")))
            .await
    }

    pub async fn set_access(&self, api: &str, req: &SetAccess) -> Result<AccessInfo, ClientError> {
        let path = format!("/api/v2/apis/{}/access", segment(api));
        self.json(self.request(Method::PUT, &path).json(req)).await
    }

    /// The jobs of a BatchAPI, newest first.
    pub async fn list_jobs(&self, api: &str) -> Result<JobList, ClientError> {
        self.json(self.request(Method::GET, &format!("/api/v2/apis/{}/jobs", segment(api))))
            .await
    }

    /// One job of a BatchAPI; `failed`: every batch that failed for good, not the first 100.
    pub async fn job_status(
        &self,
        api: &str,
        job_id: &str,
        failed: bool,
    ) -> Result<JobStatusResponse, ClientError> {
        self.json(
            self.request(
                Method::GET,
                &format!("/api/v2/apis/{}/jobs/{job_id}", segment(api)),
            )
            .query(&[("failed", failed)]),
        )
        .await
    }

    /// Stops a job.
    pub async fn stop_job(&self, api: &str, job_id: &str) -> Result<MessageResponse, ClientError> {
        self.json(self.request(
            Method::DELETE,
            &format!("/api/v2/apis/{}/jobs/{job_id}", segment(api)),
        ))
        .await
    }

    /// The log stream of a job; read it with `Response::chunk`.
    pub async fn job_logs(
        &self,
        api: &str,
        job_id: &str,
        follow: bool,
    ) -> Result<Response, ClientError> {
        self.send(
            self.request(
                Method::GET,
                &format!("/api/v2/apis/{}/jobs/{job_id}/logs", segment(api)),
            )
            .query(&[("follow", follow)]),
        )
        .await
    }

    /// The log stream of an API; read it with `Response::chunk`.
    pub async fn logs(
        &self,
        name: &str,
        follow: bool,
        tail: Option<usize>,
    ) -> Result<Response, ClientError> {
        let mut query: Vec<(&str, String)> = vec![("follow", follow.to_string())];
        if let Some(n) = tail {
            query.push(("tail", n.to_string()));
        }
        self.send(
            self.request(Method::GET, &format!("/api/v2/apis/{}/logs", segment(name)))
                .query(&query),
        )
        .await
    }
}

/// Whether `base` names this machine (`localhost` or a loopback address).
fn is_loopback(base: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(base) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `name` as one URL path segment: a model's given name may hold spaces, slashes or `?`.
fn segment(name: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("a valid url");
    url.path_segments_mut()
        .expect("an http url has a path")
        .pop_if_empty()
        .push(name);
    url.path()[1..].to_string()
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn a_given_name_is_one_path_segment() {
        assert_eq!(super::segment("iris"), "iris");
        assert_eq!(super::segment("a b/c?d#e"), "a%20b%2Fc%3Fd%23e");
    }

    #[test]
    fn loopback_endpoints_are_recognised() {
        for local in [
            "http://127.0.0.1:8888",
            "http://localhost:1",
            "http://[::1]:80/",
            "http://127.1.2.3",
        ] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in [
            "https://cortex.example.com",
            "http://10.0.0.1:8888",
            "not a url",
        ] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }
}
