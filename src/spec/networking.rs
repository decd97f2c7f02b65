//! The `networking` section: the gateway path of the API.
//!
//! `endpoint` defaults to `/<name>`; like cortex, a missing leading `/` is added and a trailing
//! `/` removed. `api_gateway: public` is what every API has here (served through the server's
//! gateway); `none` is refused, since there is no other way in. `local_port` (1024–65535) opens
//! that loopback port for the API on the local server, as cortex's local environment did.
//! `timeout` (default 5m) bounds a prediction, waiting included (then 504), and
//! `max_request_size` (default 64Mi) its body (then 413).

use super::node::Pos;
use super::problem::{quote, Problem};
use super::quantity::{Duration, Mem, QuantityError};
use super::schema;
use super::section::Section;
use super::types::Networking;

pub(crate) const MAX_ENDPOINT_LEN: usize = 1000;
/// The most `max_request_size` may be: the gateway holds a request body in memory.
const MAX_REQUEST_BYTES: u64 = 1 << 30;

/// The section, and where `endpoint` is written when it is.
pub(crate) fn networking(api: &Section, name: &str) -> Result<(Networking, Option<Pos>), Problem> {
    let sec = api.section("networking", schema::NETWORKING)?;
    let endpoint_pos = sec.has("endpoint").then(|| sec.value_pos("endpoint"));
    let endpoint = sec
        .parsed("endpoint", "a path like \"/my-api\"", endpoint)?
        .unwrap_or_else(|| format!("/{name}"));

    sec.parsed("api_gateway", "\"public\"", |text| match text {
        "public" => Ok(()),
        "none" => Err("\"none\" is not supported: every api is served through the server's gateway, at its endpoint; remove api_gateway (or set it to \"public\")".to_string()),
        other => Err(format!(
            "must be \"public\" (the only gateway there is), got {}",
            quote(other)
        )),
    })?;
    let local_port = match sec.whole("local_port", 0, 1024, 65535) {
        Ok(0) => None,
        Ok(port) => u16::try_from(port).ok(),
        Err(mut problem) => {
            problem
                .message
                .push_str(" (ports below 1024 are the system's)");
            return Err(problem);
        }
    };
    let defaults = Networking::at(endpoint);
    let timeout = sec
        .parsed("timeout", "a duration like 30s, 5m or 1h30m", |text| {
            let d: Duration = text.parse().map_err(|e: QuantityError| e.0)?;
            if d.seconds() == 0 {
                return Err(format!("must be at least 1s, got {text}"));
            }
            Ok(d)
        })?
        .unwrap_or(defaults.timeout);
    let max_request_size = sec
        .parsed("max_request_size", "a size like 10Mi or 1Gi", |text| {
            let m: Mem = text.parse().map_err(|e: QuantityError| e.0)?;
            if m.bytes == 0 || m.bytes > MAX_REQUEST_BYTES {
                return Err(format!("must be between 1 and 1Gi, got {text}"));
            }
            Ok(m)
        })?
        .unwrap_or(defaults.max_request_size);
    Ok((
        Networking {
            timeout,
            max_request_size,
            local_port,
            ..defaults
        },
        endpoint_pos,
    ))
}

/// Canonicalises an endpoint (`iris/` → `/iris`) and checks it is a plain URL path that does not
/// shadow the server's own routes.
pub(crate) fn endpoint(text: &str) -> Result<String, String> {
    let mut path = text.trim().to_string();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    while path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    if path == "/" {
        return Err("must name a path, e.g. \"/my-api\"; \"/\" alone is not allowed".into());
    }
    if path.len() > MAX_ENDPOINT_LEN {
        return Err(format!(
            "must be at most {MAX_ENDPOINT_LEN} characters, got {}",
            path.len()
        ));
    }
    if let Some(bad) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '/')))
    {
        return Err(format!(
            "may only contain letters, digits, '-', '_', '.', '~' and '/', got {:?} in {}",
            bad,
            quote(text)
        ));
    }
    if path[1..]
        .split('/')
        .any(|segment| matches!(segment, "" | "." | ".."))
    {
        return Err(format!(
            "must not contain empty, \".\" or \"..\" segments, got {}",
            quote(text)
        ));
    }
    // The server's own routes: `/healthz`, `/metrics` and the versioned control API
    // (`/api/v2/...`).
    let versioned_api = path
        .strip_prefix("/api/v")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    if path == "/healthz" || path == "/metrics" || versioned_api {
        return Err(format!(
            "{} is reserved for the cortex server; choose another path",
            quote(&path)
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::super::load::load;
    use super::*;

    fn parse(yaml: &str) -> Result<Networking, Problem> {
        let node = load(yaml).unwrap().unwrap();
        let api = Section::new(&node, "", schema::API).unwrap();
        networking(&api, "iris").map(|(n, _)| n)
    }

    #[test]
    fn defaults_to_the_name() {
        assert_eq!(parse("name: iris").unwrap().endpoint, "/iris");
    }

    #[test]
    fn canonicalises_endpoints() {
        assert_eq!(endpoint("iris").unwrap(), "/iris");
        assert_eq!(endpoint("/iris/").unwrap(), "/iris");
        assert_eq!(
            endpoint("/v1/iris-classifier").unwrap(),
            "/v1/iris-classifier"
        );
        let n = parse("networking: {endpoint: v2/iris, api_gateway: public, local_port: 8890}")
            .unwrap();
        assert_eq!(n.endpoint, "/v2/iris");
        assert_eq!(n.local_port, Some(8890));
    }

    #[test]
    fn refuses_bad_endpoints() {
        assert!(endpoint("/").unwrap_err().contains("\"/\" alone"));
        assert!(endpoint("/a b").unwrap_err().contains("' '"));
        assert!(endpoint("/a?b").unwrap_err().contains("'?'"));
        assert!(endpoint("/a//b").unwrap_err().contains("empty"));
        assert!(endpoint("/a/../b").unwrap_err().contains("\"..\""));
        assert!(endpoint("/healthz").unwrap_err().contains("reserved"));
        assert!(endpoint("/metrics").unwrap_err().contains("reserved"));
        assert!(endpoint("/api/v2/apis").unwrap_err().contains("reserved"));
        assert!(endpoint("/api/v1").unwrap_err().contains("reserved"));
        assert!(endpoint("/api").is_ok());
        assert!(endpoint("/api/iris").is_ok());
        assert!(endpoint("/api/versions").is_ok());
        assert!(endpoint("/healthz/deep").is_ok());
        assert!(endpoint(&format!("/{}", "a".repeat(1000)))
            .unwrap_err()
            .contains("at most 1000"));
        let err = parse("networking: {api_gateway: private}").unwrap_err();
        assert_eq!(err.field, "networking.api_gateway");
        assert_eq!(
            err.message,
            "must be \"public\" (the only gateway there is), got \"private\""
        );
        let err = parse("networking: {api_gateway: none}").unwrap_err();
        assert!(
            err.message.contains("\"none\" is not supported"),
            "{}",
            err.message
        );
        let err = parse("networking: {local_port: 80}").unwrap_err();
        assert_eq!(
            err.message,
            "must be between 1024 and 65535, got 80 (ports below 1024 are the system's)"
        );
    }
}
