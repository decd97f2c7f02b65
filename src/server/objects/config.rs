//! The server's S3 access, from its own environment (the standard AWS variables; pure over a
//! lookup). The operator chooses the endpoint and the credentials; a submission only names
//! buckets and keys.

use url::Url;

/// How the server reaches S3.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: String,
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`: an S3-compatible store, addressed
    /// path-style (`<endpoint>/<bucket>/<key>`), over http too when the URL says so.
    pub endpoint: Option<Url>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_ref().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

/// An AWS variable of the server's that cannot be used (`cortex server` refuses to start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{given} is set but {missing} is not: set both for S3 access, or neither")]
    HalfCredentials {
        given: &'static str,
        missing: &'static str,
    },
    #[error(
        "{var}: {value:?} is not an http:// or https:// URL ({why}); e.g. http://127.0.0.1:9000"
    )]
    BadEndpoint {
        var: &'static str,
        value: String,
        why: String,
    },
}

impl S3Config {
    /// The configuration in `var` (an environment lookup; empty values count as unset), or
    /// `None` when it holds no credentials: then the server reads nothing from S3.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<S3Config>, ConfigError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let endpoint = match ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .into_iter()
            .find_map(|name| Some((name, var(name)?)))
        {
            Some((name, value)) => Some(endpoint(name, &value)?),
            None => None,
        };
        let (id, secret) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"));
        let (access_key_id, secret_access_key) = match (id, secret) {
            (Some(id), Some(secret)) => (id, secret),
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(ConfigError::HalfCredentials {
                    given: "AWS_ACCESS_KEY_ID",
                    missing: "AWS_SECRET_ACCESS_KEY",
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::HalfCredentials {
                    given: "AWS_SECRET_ACCESS_KEY",
                    missing: "AWS_ACCESS_KEY_ID",
                })
            }
        };
        Ok(Some(S3Config {
            access_key_id,
            secret_access_key,
            session_token: var("AWS_SESSION_TOKEN"),
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".to_string()),
            endpoint,
        }))
    }

    /// What the server says of it when it starts (no secret).
    pub fn describe(&self) -> String {
        match &self.endpoint {
            Some(url) => format!(
                "s3:// job inputs are read from {} with access key {}",
                url.as_str().trim_end_matches('/'),
                self.access_key_id
            ),
            None => format!(
                "s3:// job inputs are read from AWS S3 in {} with access key {}",
                self.region, self.access_key_id
            ),
        }
    }
}

fn endpoint(var: &'static str, value: &str) -> Result<Url, ConfigError> {
    let bad = |why: String| ConfigError::BadEndpoint {
        var,
        value: value.to_string(),
        why,
    };
    let url = Url::parse(value.trim()).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad("it needs http:// or https:// and a host".to_string()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it may not have a query or a fragment".to_string()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Option<S3Config>, ConfigError> {
        S3Config::from_vars(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn the_standard_aws_variables_configure_it() {
        assert_eq!(from(&[]), Ok(None));
        assert_eq!(
            from(&[("AWS_REGION", "eu-west-1")]),
            Ok(None),
            "no credentials"
        );
        let c = from(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_SESSION_TOKEN", "t"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.session_token.as_deref(), Some("t"));
        assert_eq!(c.endpoint.unwrap().as_str(), "http://127.0.0.1:9000/");
        let c = from(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_REGION", "us-west-2"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://a:1"),
            ("AWS_ENDPOINT_URL_S3", "https://s3.example:2"),
            ("AWS_SESSION_TOKEN", ""),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.region, "us-west-2");
        assert_eq!(c.session_token, None, "empty is unset");
        assert_eq!(c.endpoint.unwrap().as_str(), "https://s3.example:2/");
        assert!(!format!(
            "{c:?}",
            c = from(&[
                ("AWS_ACCESS_KEY_ID", "a"),
                ("AWS_SECRET_ACCESS_KEY", "hush")
            ])
            .unwrap()
            .unwrap()
        )
        .contains("hush"));
    }

    #[test]
    fn half_a_configuration_is_refused() {
        assert!(matches!(
            from(&[("AWS_ACCESS_KEY_ID", "a")]),
            Err(ConfigError::HalfCredentials {
                missing: "AWS_SECRET_ACCESS_KEY",
                ..
            })
        ));
        for bad in ["127.0.0.1:9000", "ftp://h", "http://h/?x=1", "not a url"] {
            let e = from(&[
                ("AWS_ACCESS_KEY_ID", "a"),
                ("AWS_SECRET_ACCESS_KEY", "b"),
                ("AWS_ENDPOINT_URL", bad),
            ])
            .unwrap_err();
            assert!(e.to_string().starts_with("AWS_ENDPOINT_URL: "), "{e}");
        }
    }
}
