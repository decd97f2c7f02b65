//! One entry of `cortex.yaml` → [`ApiSpec`]: `name`, `kind`, and each section in turn.
//!
//! Checks run in a fixed order and the first problem is returned: a wrong `kind` value, unknown
//! keys of the API, `name`, a missing `kind`, then `predictor`, `compute`, `autoscaling`,
//! `update_strategy`, `networking` and `monitoring`.

use super::autoscaling::autoscaling;
use super::compute::compute;
use super::monitoring::monitoring;
use super::networking::networking;
use super::node::{Node, Pos, Value};
use super::predictor::predictor;
use super::problem::{quote, Problem};
use super::schema;
use super::section::Section;
use super::splitter::backends;
use super::suggest::nearest;
use super::types::{ApiKind, ApiSpec};
use super::update_strategy::update_strategy;

pub(crate) const MAX_NAME_LEN: usize = 42;
/// Names that would shadow the server's own routes.
const RESERVED_NAMES: &[&str] = &["healthz", "metrics"];

/// A validated API and where its name and endpoint are written (for whole-file checks).
pub(crate) struct Located {
    pub spec: ApiSpec,
    pub name_pos: Pos,
    /// Where `networking.endpoint` is written; `None` when it is the default (`/<name>`).
    pub endpoint_pos: Option<Pos>,
}

pub(crate) fn api(node: &Node) -> Result<Located, Vec<Problem>> {
    let (sec, name, name_pos, kind) = head(node).map_err(|p| vec![p])?;
    if kind == ApiKind::TrafficSplitter {
        return traffic_splitter(&sec, name, name_pos).map_err(|p| vec![p]);
    }
    if sec.has("apis") {
        return Err(vec![Problem::new(
            sec.key_pos("apis"),
            "apis",
            "is only for TrafficSplitters; remove it, or set \"kind: TrafficSplitter\"",
        )]);
    }
    // Each section is checked whatever the others hold: every problem is reported at once.
    let mut problems = Vec::new();
    let predictor = keep(predictor(&sec), &mut problems);
    let compute = keep(compute(&sec), &mut problems);
    let (autoscaling, update_strategy) = match kind {
        ApiKind::RealtimeAPI => {
            let target = predictor.as_ref().map_or(1.0, |p| {
                f64::from(p.processes_per_replica) * f64::from(p.threads_per_process)
            });
            (
                keep(autoscaling(&sec, target), &mut problems),
                keep(update_strategy(&sec), &mut problems),
            )
        }
        ApiKind::BatchAPI | ApiKind::TrafficSplitter => {
            for (key, why) in [
                ("autoscaling", "a BatchAPI's workers are set per job"),
                ("update_strategy", "a BatchAPI has no replicas to update"),
                ("monitoring", "it is not collected for batch jobs"),
            ] {
                keep(realtime_only(&sec, key, why), &mut problems);
            }
            (None, None)
        }
    };
    let networking = keep(networking(&sec, &name), &mut problems);
    let monitoring = keep(monitoring(&sec), &mut problems);
    let (Some(predictor), Some(compute), Some((networking, endpoint_pos)), Some(monitoring)) =
        (predictor, compute, networking, monitoring)
    else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Located {
        spec: ApiSpec {
            name,
            kind,
            predictor: Some(predictor),
            apis: Vec::new(),
            compute,
            autoscaling,
            update_strategy,
            networking,
            monitoring,
        },
        name_pos,
        endpoint_pos,
    })
}

/// What an API is before its sections: its keys, name and kind. A problem here stops the
/// API's checks (the sections' rules depend on its kind).
fn head(node: &Node) -> Result<(Section<'_>, String, Pos, ApiKind), Problem> {
    // A wrong kind explains the keys that follow (e.g. a TrafficSplitter's `apis`), so it is
    // reported before them.
    if let Some(kind_node) = raw_value(node, "kind") {
        if !kind_node.is_null() {
            kind(kind_node)?;
        }
    }
    let sec = Section::new(node, "", schema::API)?;
    let name_node = sec.require("name", "add e.g. \"name: my-api\"")?;
    let name = name_node.text("name")?.to_string();
    if let Err(message) = check_api_name(&name) {
        return Err(Problem::new(name_node.pos, "name", message));
    }
    let kind = kind(sec.require(
        "kind",
        "add \"kind: RealtimeAPI\", \"kind: BatchAPI\" or \"kind: TrafficSplitter\"",
    )?)?;
    Ok((sec, name, name_node.pos, kind))
}

/// `result`'s value, or `None` with its problem added to `problems`.
fn keep<T>(result: Result<T, Problem>, problems: &mut Vec<Problem>) -> Option<T> {
    result.map_err(|p| problems.push(p)).ok()
}

/// A TrafficSplitter: `apis` and `networking`, nothing that runs.
fn traffic_splitter(sec: &Section, name: String, name_pos: Pos) -> Result<Located, Problem> {
    for key in [
        "predictor",
        "compute",
        "autoscaling",
        "update_strategy",
        "monitoring",
    ] {
        if sec.has(key) {
            return Err(Problem::new(
                sec.key_pos(key),
                key,
                "is not for TrafficSplitters; remove it (a TrafficSplitter only has apis and networking: its apis serve)",
            ));
        }
    }
    let apis = backends(sec)?;
    let (mut networking, endpoint_pos) = networking(sec, &name)?;
    // The gateway's limits are its apis'.
    networking = crate::spec::Networking::at(networking.endpoint);
    Ok(Located {
        spec: ApiSpec {
            name,
            kind: ApiKind::TrafficSplitter,
            predictor: None,
            apis,
            compute: crate::spec::Compute::default(),
            autoscaling: None,
            update_strategy: None,
            networking,
            monitoring: None,
        },
        name_pos,
        endpoint_pos,
    })
}

/// The API's name if it is written as text, to say which API a problem is in.
pub(crate) fn label(node: &Node) -> Option<String> {
    raw_value(node, "name")
        .and_then(|v| v.text("name").ok())
        .filter(|name| !name.trim().is_empty())
        .map(str::to_string)
}

/// The value of the first `key` in a mapping, before its keys are checked.
pub(crate) fn raw_value<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    let Value::Map(entries) = &node.value else {
        return None;
    };
    entries
        .iter()
        .find(|e| e.key.scalar().is_some_and(|k| k.text == key))
        .map(|e| &e.value)
}

/// Whether `name` can name an API: DNS-1035 (a lowercase letter, then lowercase letters, digits
/// and dashes, ending with a letter or digit), at most 42 characters, and not `healthz` or `metrics` (the server's own routes).
/// The error is a lower-case sentence for the user.
pub fn check_api_name(name: &str) -> Result<(), String> {
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "{} is reserved for the server's own route (/healthz, /metrics); choose another name",
            quote(name)
        ));
    }
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && name.len() <= MAX_NAME_LEN
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        return Ok(());
    }
    let suggestion = match suggest_name(name) {
        // Whole, to be copied: a valid name has nothing to escape.
        Some(fixed) => format!("; try \"{fixed}\""),
        None => String::new(),
    };
    Err(format!(
        "must start with a lowercase letter, contain only lowercase letters, digits and dashes, \
         end with a letter or digit, and be at most {MAX_NAME_LEN} characters; got {}{suggestion}",
        quote(name)
    ))
}

/// A valid name close to `name` (`Iris_Classifier` → `iris-classifier`), if there is one.
/// The longest name a caller may give a model (Model Bazaar names are free-form).
pub const MAX_GIVEN_NAME_LEN: usize = 256;

/// Checks a free-form model name (Model Bazaar's `model_name`): 1 to 256 characters, no
/// control characters, no invisible or text-direction characters and no space at either end
/// (a name must not pass for another in a listing), not `.` or `..`.
pub fn check_given_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".to_string());
    }
    if name.trim() != name {
        return Err("must not have a space at either end".to_string());
    }
    if let Some(c) = name.chars().find(|c| is_invisible(*c)) {
        return Err(format!(
            "must not contain invisible or text-direction characters (it holds U+{:04X})",
            u32::from(c)
        ));
    }
    if name.chars().count() > MAX_GIVEN_NAME_LEN {
        return Err(format!("is longer than {MAX_GIVEN_NAME_LEN} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters (newlines, tabs)".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!(
            "{name:?} cannot be sent as part of a URL; choose another name"
        ));
    }
    Ok(())
}

/// Characters that show as nothing, or turn the text around them (Unicode's format
/// characters in use, and the other invisible fillers): a name holding one can look like
/// another.
fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
            | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
            | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0xE0000..=0xE0FFF
    )
}

/// The name a model named `given` is routed by (`/<name>`): `given` itself when it is a valid
/// API name; otherwise `given` lowercased, with every run of other characters made one dash,
/// trimmed to start with a letter and to 42 characters (`model` when nothing is left). When
/// that is `taken`, `-<salt>` is appended (the base cut to fit). Pure.
pub fn route_name(given: &str, salt: &str, taken: impl Fn(&str) -> bool) -> String {
    if check_api_name(given).is_ok() {
        return given.to_string();
    }
    let base = suggest_name(given).unwrap_or_else(|| "model".to_string());
    if !taken(&base) {
        return base;
    }
    let salt: String = salt
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(8)
        .collect();
    let keep = MAX_NAME_LEN.saturating_sub(salt.len() + 1);
    let mut cut: String = base.chars().take(keep).collect();
    while cut.ends_with('-') {
        cut.pop();
    }
    format!("{cut}-{salt}")
}

fn suggest_name(name: &str) -> Option<String> {
    let mut fixed = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            fixed.push(c);
        } else if !fixed.is_empty() && !fixed.ends_with('-') {
            fixed.push('-');
        }
    }
    let fixed = fixed.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
    let mut fixed: String = fixed.chars().take(MAX_NAME_LEN).collect();
    while fixed.ends_with('-') {
        fixed.pop();
    }
    let valid = !fixed.is_empty() && !RESERVED_NAMES.contains(&fixed.as_str());
    valid.then_some(fixed)
}

fn kind(node: &Node) -> Result<ApiKind, Problem> {
    const KINDS: &[&str] = &["RealtimeAPI", "BatchAPI", "TrafficSplitter"];
    let text = node.text("kind")?;
    let message = match text {
        "RealtimeAPI" => return Ok(ApiKind::RealtimeAPI),
        "BatchAPI" => return Ok(ApiKind::BatchAPI),
        "TrafficSplitter" => return Ok(ApiKind::TrafficSplitter),
        other => {
            let hint = nearest(other, KINDS)
                .map(|near| format!("; did you mean \"{near}\"?"))
                .unwrap_or_default();
            format!(
                "unknown kind {}{hint} (valid kinds are \"RealtimeAPI\", \"BatchAPI\" and \"TrafficSplitter\")",
                quote(other)
            )
        }
    };
    Err(Problem::new(node.pos, "kind", message))
}

fn realtime_only(sec: &Section, key: &str, why: &str) -> Result<(), Problem> {
    if sec.has(key) {
        return Err(Problem::new(
            sec.key_pos(key),
            key,
            format!("is only for RealtimeAPIs; remove it ({why})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::load::load;
    use super::*;

    #[test]
    fn a_given_name_is_routed_by_a_name_derived_from_it() {
        let free = |_: &str| false;
        assert_eq!(route_name("iris", "abc", free), "iris");
        assert_eq!(
            route_name("name for new saved model", "abc", free),
            "name-for-new-saved-model"
        );
        assert_eq!(
            route_name("custom_deployment_name", "abc", free),
            "custom-deployment-name"
        );
        assert_eq!(route_name("日本", "abc", free), "model");
        let taken = |n: &str| n == "my-model";
        assert_eq!(
            route_name("My Model", "3F2a-99xyz", taken),
            "my-model-3f2a99xy"
        );
        let long = "A".repeat(100);
        let routed = route_name(&long, "0123456789", |_| true);
        assert!(routed.len() <= MAX_NAME_LEN && routed.ends_with("-01234567"));
        assert!(check_api_name(&routed).is_ok());
        assert!(check_given_name("name for new saved model").is_ok());
        assert!(check_given_name(" ").is_err());
        assert!(check_given_name("a\nb").is_err());
        assert!(check_given_name("..").is_err());
        // Look-alikes of another name in a listing.
        for name in [
            "alice-api\u{202e}\u{200b}",
            "alice-batch ",
            " alice",
            "a\u{feff}b",
        ] {
            assert!(check_given_name(name).is_err(), "{name:?}");
        }
        assert!(check_given_name("modèle de Zoë").is_ok());
    }

    fn parse(yaml: &str) -> Result<ApiSpec, Problem> {
        api(&load(yaml).unwrap().unwrap())
            .map(|l| l.spec)
            .map_err(|mut problems| problems.remove(0))
    }

    fn message(yaml: &str) -> String {
        let p = parse(yaml).unwrap_err();
        format!("{}: {}", p.field, p.message)
    }

    const PREDICTOR: &str = "predictor: {type: python, path: p.py}";

    #[test]
    fn names_follow_dns_1035() {
        for ok in ["iris", "a", "iris-classifier-2", &"a".repeat(42)] {
            assert_eq!(check_api_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Iris",
            "1iris",
            "iris-",
            "-iris",
            "ir_is",
            "iris.v2",
            &"a".repeat(43),
        ] {
            assert!(check_api_name(bad).is_err(), "{bad}");
        }
        assert!(check_api_name("healthz").unwrap_err().contains("reserved"));
        assert!(check_api_name("metrics").unwrap_err().contains("reserved"));
    }

    #[test]
    fn bad_names_get_a_suggestion() {
        assert!(check_api_name("Iris_Classifier")
            .unwrap_err()
            .ends_with("; got \"Iris_Classifier\"; try \"iris-classifier\""));
        // A suggestion longer than a quote is shown whole.
        let long = format!("A{}", "b".repeat(41));
        let expected = format!("; try \"a{}\"", "b".repeat(41));
        assert!(check_api_name(&long).unwrap_err().ends_with(&expected));
        assert!(check_api_name("123")
            .unwrap_err()
            .ends_with("; got \"123\""));
        assert_eq!(
            suggest_name("2fast_2Furious!"),
            Some("fast-2furious".into())
        );
    }

    #[test]
    fn realtime_apis_get_scaling_defaults() {
        let spec = parse(&format!("name: a\nkind: RealtimeAPI\n{PREDICTOR}")).unwrap();
        assert!(spec.autoscaling.is_some());
        assert!(spec.update_strategy.is_some());
        assert_eq!(spec.networking.endpoint, "/a");
        assert_eq!(spec.monitoring, None);
    }

    #[test]
    fn target_concurrency_defaults_to_processes_times_threads() {
        let spec = parse(
            "name: a\nkind: RealtimeAPI\npredictor: {type: python, path: p.py, \
             processes_per_replica: 2, threads_per_process: 3}",
        )
        .unwrap();
        assert_eq!(spec.autoscaling.unwrap().target_replica_concurrency, 6.0);
    }

    #[test]
    fn batch_apis_have_no_scaling_sections() {
        let spec = parse(&format!("name: a\nkind: BatchAPI\n{PREDICTOR}")).unwrap();
        assert_eq!(spec.autoscaling, None);
        assert_eq!(spec.update_strategy, None);
        assert_eq!(
            message(&format!(
                "name: a\nkind: BatchAPI\n{PREDICTOR}\nautoscaling: {{min_replicas: 2}}"
            )),
            "autoscaling: is only for RealtimeAPIs; remove it (a BatchAPI's workers are set per \
             job)"
        );
        assert!(message(&format!(
            "name: a\nkind: BatchAPI\n{PREDICTOR}\nupdate_strategy: {{max_surge: 1}}"
        ))
        .starts_with("update_strategy: is only for RealtimeAPIs"));
        // An empty section is as good as none.
        assert!(parse(&format!(
            "name: a\nkind: BatchAPI\n{PREDICTOR}\nautoscaling:"
        ))
        .is_ok());
    }

    #[test]
    fn kinds() {
        assert_eq!(
            message(&format!("name: a\nkind: TrafficSplitter\n{PREDICTOR}")),
            "predictor: is not for TrafficSplitters; remove it (a TrafficSplitter only has apis and networking: its apis serve)"
        );
        assert_eq!(
            message(&format!("name: a\nkind: realtime\n{PREDICTOR}")),
            "kind: unknown kind \"realtime\"; did you mean \"RealtimeAPI\"? (valid kinds are \
             \"RealtimeAPI\", \"BatchAPI\" and \"TrafficSplitter\")"
        );
        assert_eq!(
            message(&format!("name: a\n{PREDICTOR}")),
            "kind: is required; add \"kind: RealtimeAPI\", \"kind: BatchAPI\" or \"kind: TrafficSplitter\""
        );
    }

    #[test]
    fn a_wrong_kind_comes_before_unknown_keys() {
        assert!(message("name: a\nkind: Splitter\napis: []\nodd: 1")
            .starts_with("kind: unknown kind \"Splitter\""));
        assert_eq!(
            message("name: a\nkind: TrafficSplitter\napis: []"),
            "apis: must list at least one RealtimeAPI"
        );
    }

    #[test]
    fn unknown_keys_come_before_missing_ones() {
        assert_eq!(
            message("nmae: a\nkind: RealtimeAPI"),
            "nmae: unknown key; did you mean \"name\"?"
        );
    }

    #[test]
    fn labels_need_text_names() {
        let node = load("{name: iris, kind: x}").unwrap().unwrap();
        assert_eq!(label(&node).as_deref(), Some("iris"));
        let node = load("{name: [1], kind: x}").unwrap().unwrap();
        assert_eq!(label(&node), None);
        let node = load("- 1").unwrap().unwrap();
        assert_eq!(label(&node), None);
    }

    #[test]
    fn a_traffic_splitter_has_apis_whose_weights_add_up_to_100() {
        let spec = parse(
            "name: s\nkind: TrafficSplitter\napis: [{name: a, weight: 80}, {name: b, weight: 20}]",
        )
        .unwrap();
        assert_eq!(spec.kind, ApiKind::TrafficSplitter);
        assert_eq!(spec.predictor, None);
        assert_eq!(
            spec.apis
                .iter()
                .map(|b| (b.name.as_str(), b.weight))
                .collect::<Vec<_>>(),
            [("a", 80), ("b", 20)]
        );
        assert_eq!(spec.networking.endpoint, "/s");
        assert_eq!(
            message("name: s\nkind: TrafficSplitter\napis: [{name: a, weight: 70}, {name: b, weight: 20}]"),
            "apis: the weights must add up to 100, got 70 + 20 (90); change them so they do"
        );
        assert_eq!(
            message("name: s\nkind: TrafficSplitter\napis: [{name: a, weight: 101}]"),
            "apis[0].weight: must be between 0 and 100, got 101"
        );
        assert_eq!(
            message("name: s\nkind: TrafficSplitter\napis: [{name: a, weight: 50}, {name: a, weight: 50}]"),
            "apis[1].name: \"a\" is listed twice; list each api once"
        );
        assert_eq!(
            message("name: s\nkind: TrafficSplitter"),
            "apis: is required; list the RealtimeAPIs to split traffic between, e.g. \"apis: [{name: a, weight: 80}, {name: b, weight: 20}]\""
        );
        assert_eq!(
            message("name: s\nkind: TrafficSplitter\napis: [{name: a}]"),
            "apis[0].weight: is required; give its share of the traffic in percent, e.g. \"weight: 20\""
        );
        assert!(message(&format!(
            "name: a\nkind: RealtimeAPI\n{PREDICTOR}\napis: []"
        ))
        .starts_with("apis: is only for TrafficSplitters"));
    }
}
