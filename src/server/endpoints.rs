//! Which path an API may take, given the paths stored APIs serve. A path serves one API, and
//! the paths one segment under a BatchAPI's (`/<batch>/<job_id>`) are its jobs' status URLs:
//! no other API may take one (it would answer instead of a real job), and a BatchAPI may not
//! take a path with another API's endpoint one segment under it. Every path under a
//! RealtimeAPI's `/<model_id>/` and `/<deployment_name>/` is that API's (Model Bazaar's
//! prefix routes): no other API may take one. Pure.

/// A path a stored API serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub api: String,
    pub path: String,
    pub batch: bool,
    /// Every path under `path/` is the API's too.
    pub prefix: bool,
}

/// Why API `name` (a BatchAPI when `batch`) may not serve at `endpoint`; `None` when it may.
pub fn conflict(taken: &[Taken], name: &str, endpoint: &str, batch: bool) -> Option<String> {
    let others = taken.iter().filter(|t| t.api != name);
    for t in others {
        if t.prefix && (t.path == endpoint || under(endpoint, &t.path)) {
            return Some(format!(
                "networking.endpoint: {endpoint} is under {}/, where api {owner} serves every path (its model id or deployment_name); choose another endpoint",
                t.path,
                owner = t.api
            ));
        }
        if t.path == endpoint {
            return Some(format!(
                "networking.endpoint: {endpoint} is already the endpoint of api {owner}; choose another endpoint, or delete {owner} first",
                owner = t.api
            ));
        }
        if t.batch && one_under(endpoint, &t.path) {
            return Some(format!(
                "networking.endpoint: {endpoint} is under the endpoint of BatchAPI {owner}, where its jobs' status is served ({}/<job_id>); choose another endpoint",
                t.path,
                owner = t.api
            ));
        }
        if batch && one_under(&t.path, endpoint) {
            return Some(format!(
                "networking.endpoint: {endpoint} would serve its jobs' status at {endpoint}/<job_id>, but {} is the endpoint of api {}; choose another endpoint",
                t.path, t.api
            ));
        }
    }
    None
}

/// Whether `path` is under `base/`, at any depth.
fn under(path: &str, base: &str) -> bool {
    path.strip_prefix(base.trim_end_matches('/'))
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether `path` is `base` with one more segment.
fn one_under(path: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    path.strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|seg| !seg.is_empty() && !seg.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(api: &str, path: &str, batch: bool) -> Taken {
        Taken {
            api: api.into(),
            path: path.into(),
            batch,
            prefix: false,
        }
    }

    #[test]
    fn nothing_takes_a_path_under_a_model_id_or_deployment_name() {
        let mut id = taken("rt", "/0b7f2c56-1d1e-4c1a-9a55-3d2f1b0c9e11", false);
        id.prefix = true;
        let t = [id];
        let health = "/0b7f2c56-1d1e-4c1a-9a55-3d2f1b0c9e11/health";
        assert!(conflict(&t, "x", health, false)
            .unwrap()
            .contains("where api rt serves every path"));
        assert!(conflict(&t, "x", "/0b7f2c56-1d1e-4c1a-9a55-3d2f1b0c9e11/a/b", false).is_some());
        assert_eq!(conflict(&t, "rt", health, false), None, "its own");
        assert_eq!(conflict(&t, "x", "/0b7f2c56", false), None);
    }

    #[test]
    fn nothing_takes_a_job_status_path_of_a_batch_api() {
        let t = [taken("jobs", "/jobs", true), taken("rt", "/rt", false)];
        assert!(conflict(&t, "x", "/jobs/69abc", false)
            .unwrap()
            .contains("under the endpoint of BatchAPI jobs"));
        assert!(conflict(&t, "x", "/jobs/69abc", true).is_some());
        assert_eq!(conflict(&t, "x", "/jobs/a/b", false), None, "two under");
        assert_eq!(conflict(&t, "x", "/jobsx", false), None);
        assert_eq!(
            conflict(&t, "x", "/rt/y", false),
            None,
            "under a realtime api"
        );
        assert!(conflict(&t, "x", "/rt", false)
            .unwrap()
            .contains("already the endpoint of api rt"));
        assert_eq!(conflict(&t, "rt", "/rt", false), None, "its own path");
    }

    #[test]
    fn a_batch_api_takes_no_path_with_an_endpoint_under_it() {
        let t = [taken("rt", "/a/b", false)];
        assert!(conflict(&t, "batch", "/a", true)
            .unwrap()
            .contains("/a/b is the endpoint of api rt"));
        assert_eq!(conflict(&t, "rt2", "/a", false), None);
        assert_eq!(conflict(&t, "batch", "/", true), None, "two under the root");
    }
}
