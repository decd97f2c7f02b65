//! The HTTP client for `delimited_files`: every hop's address checked against the
//! [`FetchPolicy`], no proxy (the server connects to the address it checked), and errors that
//! tell a tenant why a URL was refused but nothing of what a failed address answered.

use std::sync::Arc;
use std::time::Duration;

use reqwest::redirect;
use reqwest::Url;
use url::Host;

use super::policy::{FetchPolicy, Refusal};
use super::resolver::CheckedResolver;

/// Redirects followed before a URL counts as unreachable.
const MAX_REDIRECTS: usize = 10;

#[derive(Debug, thiserror::Error)]
#[error("it redirected more than {MAX_REDIRECTS} times")]
struct TooManyRedirects;

/// Fetches URLs for jobs, from allowed addresses only.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: Arc<FetchPolicy>,
}

impl Fetcher {
    pub fn new(policy: FetchPolicy) -> Result<Fetcher, reqwest::Error> {
        let policy = Arc::new(policy);
        let checked = policy.clone();
        let redirects = redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(TooManyRedirects);
            }
            // A named host is checked as it resolves; an address here.
            match literal_check(&checked, attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refusal) => attempt.error(refusal),
            }
        });
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver {
                policy: policy.clone(),
            }))
            .redirect(redirects)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Fetcher { client, policy })
    }

    /// Whether `url` may be fetched as far as can be told before fetching it: its address, or
    /// what its name resolves to now (a name that does not resolve yet is left to the fetch).
    pub async fn check(&self, url: &Url) -> Result<(), Refusal> {
        literal_check(&self.policy, url)?;
        let Some(Host::Domain(name)) = url.host() else {
            return Ok(());
        };
        if self.policy.allows_host(name) {
            return Ok(());
        }
        let lookup = tokio::net::lookup_host((name, 0));
        let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(10), lookup).await else {
            return Ok(());
        };
        let ips: Vec<_> = addrs.map(|a| a.ip()).collect();
        self.policy.check_resolved(name, &ips)
    }

    /// `GET url`, following allowed redirects. The error says why, as a tenant may hear it:
    /// the refusal and its rule, the status of an allowed server's answer, or only that the
    /// URL could not be fetched.
    pub async fn get(&self, url: &Url) -> Result<reqwest::Response, String> {
        literal_check(&self.policy, url).map_err(|r| format!("cannot fetch it: {r}"))?;
        let resp = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("cannot fetch it: {}", describe(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("cannot fetch it: GET answered {}", resp.status()));
        }
        Ok(resp)
    }
}

/// A URL whose host is an address: that address against the policy (the client connects to
/// it without resolving anything).
fn literal_check(policy: &FetchPolicy, url: &Url) -> Result<(), Refusal> {
    match url.host() {
        Some(Host::Ipv4(ip)) => policy.check_literal(ip.into()),
        Some(Host::Ipv6(ip)) => policy.check_literal(ip.into()),
        _ => Ok(()),
    }
}

/// What a failed request may tell: a refusal (of the first hop or a redirect), too many
/// redirects, or nothing more than that the URL could not be fetched: no connection errors,
/// which would tell an open port from a closed one.
fn describe(e: &reqwest::Error) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(refusal) = c.downcast_ref::<Refusal>() {
            return refusal.to_string();
        }
        if let Some(too_many) = c.downcast_ref::<TooManyRedirects>() {
            return too_many.to_string();
        }
        cause = c.source();
    }
    // Refused, reset, timed out or not HTTP: all the same to a tenant.
    "no answer".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::fetch::Allowed;

    #[tokio::test]
    async fn names_and_addresses_are_checked_before_the_fetch() {
        let f = Fetcher::new(FetchPolicy::default()).unwrap();
        let url = |s: &str| Url::parse(s).unwrap();
        for refused in [
            "http://127.0.0.1:1/a",
            "http://[::1]/a",
            "http://[::ffff:127.0.0.1]/a",
            "http://2130706433/a",
            "http://0x7f.1/a",
            "http://localhost/a",
            "http://169.254.169.254/latest/meta-data",
        ] {
            assert!(f.check(&url(refused)).await.is_err(), "{refused}");
            let e = f.get(&url(refused)).await.unwrap_err();
            assert!(
                e.contains("which this server does not fetch from"),
                "{refused}: {e}"
            );
        }
        let allowed = Fetcher::new(FetchPolicy::new(vec![
            "127.0.0.0/8".parse::<Allowed>().unwrap(),
            "localhost".parse().unwrap(),
        ]))
        .unwrap();
        assert!(allowed.check(&url("http://127.0.0.1:1/a")).await.is_ok());
        assert!(allowed.check(&url("http://localhost:1/a")).await.is_ok());
        // An allowed address with nothing listening says no more than that.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let e = allowed
            .get(&url(&format!("http://127.0.0.1:{port}/a")))
            .await
            .unwrap_err();
        assert_eq!(e, "cannot fetch it: no answer");
    }
}
