//! Typed HTTP client for the control API; the CLI's only way to the server.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::api::{
    AccessInfo, ApiResponse, BundleStored, CreateTeam, CreateToken, CreateUser, CreatedToken,
    CreatedUser, DeployRequest, DeployResult, ErrorBody, Health, JobList, JobStatusResponse,
    MessageResponse, ServerInfo, SetAccess, SetMember, TeamInfo, TokenInfo, UserInfo,
};

mod error;
mod timeout;

use error::quoted;
pub use error::ClientError;

/// The most of an answer the client reads (a JSON answer, or an error's body): far more than
/// any cortex answer (a list of thousands of APIs), far less than a machine's memory. A log
/// stream is not read whole and has no bound.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;
pub use timeout::{
    from_env as timeout_from_env, Waiting, CONNECT as CONNECT_TIMEOUT, DEFAULT as DEFAULT_TIMEOUT,
    VAR as TIMEOUT_VAR,
};

/// A connection to one cortex server with one token.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    timeout: Duration,
}

impl Client {
    /// A client with the timeout `CORTEX_CLIENT_TIMEOUT` asks for (the default when it is unset
    /// or invalid; `cli/environment.rs` refuses an invalid one first).
    pub fn new(base: &str, token: Option<String>) -> Client {
        let timeout = timeout::from_env()
            .ok()
            .flatten()
            .unwrap_or(DEFAULT_TIMEOUT);
        Client::with_timeout(base, token, timeout)
    }

    /// A client that waits at most `timeout` for a connection (and never more than 5 s), an
    /// answer, each read of a body, or an upload's progress.
    pub fn with_timeout(base: &str, token: Option<String>, timeout: Duration) -> Client {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout.min(CONNECT_TIMEOUT))
            // A followed log stream has no read timeout: keep-alive notices a vanished server.
            .tcp_keepalive(Duration::from_secs(15))
            .tcp_keepalive_interval(Duration::from_secs(15))
            .tcp_keepalive_retries(4u32);
        if is_loopback(base) {
            // An HTTP(S)_PROXY meant for the outside world must not see local traffic.
            builder = builder.no_proxy();
        }
        if base.starts_with("http://") {
            // Plain HTTP checks no certificate: the system's CA bundle is not read (a few
            // milliseconds of every command).
            builder = builder.tls_built_in_root_certs(false);
        }
        let http = builder.build().unwrap_or_default();
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
            timeout,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// How long the client waits for an answer, a read or an upload's progress.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req
    }

    /// `METHOD /path` of a request, for messages.
    fn what(request: &reqwest::Request) -> String {
        format!("{} {}", request.method(), request.url().path())
    }

    fn timed_out(&self, what: &str, waiting: Waiting) -> ClientError {
        ClientError::TimedOut {
            url: self.base.clone(),
            what: what.to_string(),
            waiting,
            after: self.timeout,
        }
    }

    fn transport(&self, what: &str, source: reqwest::Error) -> ClientError {
        if source.is_timeout() {
            let waiting = if source.is_connect() {
                Waiting::Connecting
            } else {
                Waiting::Answer
            };
            return self.timed_out(what, waiting);
        }
        ClientError::Unreachable {
            url: self.base.clone(),
            source,
        }
    }

    fn build(&self, req: RequestBuilder) -> Result<reqwest::Request, ClientError> {
        req.build().map_err(|e| ClientError::Protocol {
            url: self.base.clone(),
            detail: format!("cannot build the request: {e}"),
        })
    }

    /// Sends a request and waits at most the timeout for the answer's head; an error answer
    /// becomes [`ClientError::Api`]. The body is the caller's to read.
    async fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let request = self.build(req)?;
        Ok(self.execute(request).await?.0)
    }

    /// [`Client::send`] for a built request; also `METHOD /path`, for messages.
    async fn execute(&self, request: reqwest::Request) -> Result<(Response, String), ClientError> {
        let what = Self::what(&request);
        let resp = match tokio::time::timeout(self.timeout, self.http.execute(request)).await {
            Ok(r) => r.map_err(|e| self.transport(&what, e))?,
            Err(_) => return Err(self.timed_out(&what, Waiting::Answer)),
        };
        Ok((self.check(resp, &what).await?, what))
    }

    /// The answer itself when it is a success, else its error.
    async fn check(&self, resp: Response, what: &str) -> Result<Response, ClientError> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = match self.body(resp, what).await {
            Ok(body) => body,
            Err(e @ ClientError::TooLarge { .. }) => return Err(e),
            Err(_) => Vec::new(),
        };
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => ClientError::Api {
                status,
                kind: e.kind,
                message: quoted(&e.message),
            },
            Err(_) => {
                let text = String::from_utf8_lossy(&body);
                let message = match first_words(&text) {
                    None => format!("the server answered {status} to {what}"),
                    // Every answer of a cortex server's control API has cortex's error body.
                    Some(words) => format!(
                        "{} answered {status} to {what} without a cortex error: it is not a cortex server, or a proxy in front of it answered; check the endpoint (`cortex env list`). It said: {words}",
                        self.base
                    ),
                };
                ClientError::Api {
                    status,
                    kind: "http".to_string(),
                    message,
                }
            }
        })
    }

    /// A whole body, each read within the timeout (a body that keeps coming is not cut for
    /// its time), and refused past [`MAX_ANSWER_BYTES`] without reading on.
    async fn body(&self, mut resp: Response, what: &str) -> Result<Vec<u8>, ClientError> {
        let too_large = || ClientError::TooLarge {
            url: self.base.clone(),
            what: what.to_string(),
            limit: MAX_ANSWER_BYTES,
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk(&mut resp, what).await? {
            if out.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The next piece of a body within the timeout; `None` at its end.
    pub async fn next_chunk(
        &self,
        resp: &mut Response,
        what: &str,
    ) -> Result<Option<bytes::Bytes>, ClientError> {
        match tokio::time::timeout(self.timeout, resp.chunk()).await {
            Ok(r) => r.map_err(|e| self.transport(what, e)),
            Err(_) => Err(self.timed_out(what, Waiting::Answer)),
        }
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let (resp, what) = self.execute(self.build(req)?).await?;
        self.decode(resp, &what).await
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        resp: Response,
        what: &str,
    ) -> Result<T, ClientError> {
        let bytes = self.body(resp, what).await?;
        // serde's message may quote the answer (a string where a number belongs).
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
            url: self.base.clone(),
            detail: quoted(&e.to_string()),
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
            // An answer to HEAD has no body to say why: the server's own words (a missing or
            // wrong token, most often) come from a GET that fails the same way.
            Err(e @ ClientError::Api { .. }) => match self.info().await {
                Err(why @ ClientError::Api { .. }) if why.status() == e.status() => Err(why),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Uploads a bundle in `chunks`, calling `sent` with each chunk's size as the connection
    /// takes it. It fails when the upload makes no progress for the timeout, never for its
    /// total length.
    pub async fn put_bundle(
        &self,
        sha256: &str,
        chunks: Vec<bytes::Bytes>,
        sent: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<BundleStored, ClientError> {
        let progress = timeout::Progress::new();
        let touched = progress.clone();
        let stream = futures_util::stream::iter(chunks.into_iter().map(move |c| {
            touched.touch();
            sent(c.len() as u64);
            Ok::<_, std::io::Error>(c)
        }));
        let path = format!("/api/v2/bundles/{sha256}");
        let request = self.build(
            self.request(Method::PUT, &path)
                .header(reqwest::header::CONTENT_TYPE, "application/gzip")
                .body(reqwest::Body::wrap_stream(stream)),
        )?;
        let what = Self::what(&request);
        let resp = tokio::select! {
            r = self.http.execute(request) => r.map_err(|e| self.transport(&what, e))?,
            () = progress.stalled(self.timeout) => {
                return Err(self.timed_out(&what, Waiting::Upload));
            }
        };
        let resp = self.check(resp, &what).await?;
        self.decode(resp, &what).await
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
    /// Restarts an API's replicas; `force` also while an update is in progress.
    pub async fn refresh_api(
        &self,
        name: &str,
        force: bool,
    ) -> Result<MessageResponse, ClientError> {
        let path = format!("/api/v2/apis/{}/refresh", segment(name));
        self.json(self.request(Method::POST, &path).query(&[("force", force)]))
            .await
    }

    pub async fn get_api(&self, name: &str) -> Result<ApiResponse, ClientError> {
        self.json(self.request(Method::GET, &format!("/api/v2/apis/{}", segment(name))))
            .await
    }

    /// Deletes an API; `force` even when a TrafficSplitter uses it, `keep_cache` keeps its
    /// bundle for a while.
    pub async fn delete_api(
        &self,
        name: &str,
        force: bool,
        keep_cache: bool,
    ) -> Result<MessageResponse, ClientError> {
        self.json(
            self.request(Method::DELETE, &format!("/api/v2/apis/{}", segment(name)))
                .query(&[("force", force), ("keepCache", keep_cache)]),
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
        tail: Option<usize>,
    ) -> Result<Response, ClientError> {
        let mut query: Vec<(&str, String)> = vec![("follow", follow.to_string())];
        if let Some(n) = tail {
            query.push(("tail", n.to_string()));
        }
        self.send(
            self.request(
                Method::GET,
                &format!("/api/v2/apis/{}/jobs/{job_id}/logs", segment(api)),
            )
            .query(&query),
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

/// The start of a text that is not cortex's (an HTML error page): its first non-empty line,
/// at most 200 bytes, quoted as an error message may (`None`: no text).
fn first_words(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut end = line.len().min(200);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < line.len() { "..." } else { "" };
    Some(format!("{}{cut}", quoted(&line[..end])))
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
