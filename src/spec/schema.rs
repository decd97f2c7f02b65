//! The keys each section of an API accepts, and what to say about a key that is not one of them.

use super::suggest::{all_of, nearest};

pub(crate) const API: &[&str] = &[
    "name",
    "kind",
    "predictor",
    "compute",
    "autoscaling",
    "update_strategy",
    "networking",
    "monitoring",
    "apis",
];

/// The keys of one entry of a TrafficSplitter's `apis`.
pub(crate) const SPLITTER_API: &[&str] = &["name", "weight"];

pub(crate) const PREDICTOR: &[&str] = &[
    "type",
    "path",
    "command",
    "model_path",
    "models",
    "config",
    "python_path",
    "image",
    "env",
    "processes_per_replica",
    "threads_per_process",
];

pub(crate) const COMPUTE: &[&str] = &["cpu", "gpu", "mem", "inf"];

pub(crate) const AUTOSCALING: &[&str] = &[
    "min_replicas",
    "max_replicas",
    "init_replicas",
    "target_replica_concurrency",
    "max_replica_concurrency",
    "window",
    "downscale_stabilization_period",
    "upscale_stabilization_period",
    "max_downscale_factor",
    "max_upscale_factor",
    "downscale_tolerance",
    "upscale_tolerance",
    "max_queue_length",
];

pub(crate) const UPDATE_STRATEGY: &[&str] = &["max_surge", "max_unavailable"];

pub(crate) const NETWORKING: &[&str] = &[
    "endpoint",
    "api_gateway",
    "local_port",
    "timeout",
    "max_request_size",
];

pub(crate) const MONITORING: &[&str] = &["model_type", "key"];

pub(crate) const MODELS: &[&str] = &["paths", "dir", "cache_size", "disk_cache_size"];

/// One entry of `predictor.models.paths`.
pub(crate) const MODEL_PATH: &[&str] = &["name", "model_path"];

/// Every section by its path (`""` is the API itself).
const SECTIONS: &[(&str, &[&str])] = &[
    ("", API),
    ("predictor", PREDICTOR),
    ("compute", COMPUTE),
    ("autoscaling", AUTOSCALING),
    ("update_strategy", UPDATE_STRATEGY),
    ("networking", NETWORKING),
    ("monitoring", MONITORING),
    ("predictor.models", MODELS),
];

const NO_TENSORFLOW: &str = "is only for the tensorflow predictor, which is not supported; use \
                             \"type: python\" and load the model in PythonPredictor.__init__";

const NO_BATCHING: &str = "is only for the tensorflow predictor, which is not supported; \
                           remove it: a python predictor gets one request per predict() call \
                           (raise threads_per_process or processes_per_replica to serve several \
                           at once)";

/// Keys of cortex v0.2x that this cortex does not support, with what to do instead.
const UNSUPPORTED: &[(&str, &str, &str)] = &[
    ("predictor.models", "signature_key", NO_TENSORFLOW),
    ("predictor", "signature_key", NO_TENSORFLOW),
    ("predictor", "server_side_batching", NO_BATCHING),
    ("predictor", "tensorflow_serving_image", NO_TENSORFLOW),
];

/// What is wrong with `key` in the section at `path` whose valid keys are `allowed`.
pub(crate) fn unknown_key(path: &str, key: &str, allowed: &[&str]) -> String {
    if let Some((_, _, why)) = UNSUPPORTED
        .iter()
        .find(|(section, k, _)| *section == path && *k == key)
    {
        return (*why).to_string();
    }
    if let Some(near) = nearest(key, allowed) {
        return format!("unknown key; did you mean \"{near}\"?");
    }
    if let Some((section, _)) = SECTIONS
        .iter()
        .find(|(section, keys)| *section != path && keys.contains(&key))
    {
        return if section.is_empty() {
            "unknown key here; it belongs at the top level of the api, next to \"name\"".into()
        } else {
            format!("unknown key here; it belongs in the {section} section ({section}.{key})")
        };
    }
    format!("unknown key; the valid keys are {}", all_of(allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_key() {
        assert_eq!(
            unknown_key("predictor", "typ", PREDICTOR),
            "unknown key; did you mean \"type\"?"
        );
    }

    #[test]
    fn points_to_the_right_section() {
        assert_eq!(
            unknown_key("", "min_replicas", API),
            "unknown key here; it belongs in the autoscaling section (autoscaling.min_replicas)"
        );
        assert_eq!(
            unknown_key("predictor", "cpu", PREDICTOR),
            "unknown key here; it belongs in the compute section (compute.cpu)"
        );
        assert_eq!(
            unknown_key("predictor", "kind", PREDICTOR),
            "unknown key here; it belongs at the top level of the api, next to \"name\""
        );
    }

    #[test]
    fn lists_valid_keys_otherwise() {
        assert_eq!(
            unknown_key("monitoring", "zebra", MONITORING),
            "unknown key; the valid keys are \"model_type\" and \"key\""
        );
    }

    #[test]
    fn explains_unsupported_keys() {
        assert!(unknown_key("predictor.models", "signature_key", MODELS)
            .starts_with("is only for the tensorflow predictor"));
        assert!(unknown_key("predictor", "signature_key", PREDICTOR).contains("tensorflow"));
        // Said of a python predictor too: not "use type: python".
        let batching = unknown_key("predictor", "server_side_batching", PREDICTOR);
        assert!(batching.contains("remove it"), "{batching}");
        assert!(!batching.contains("type: python"), "{batching}");
    }
}
