//! The `predictor` section: what runs in each replica.
//!
//! - `type: python` needs `path` (a `.py` file inside the project) and refuses `command`;
//! - `type: onnx` needs `path` (the file defining `ONNXPredictor`) and `model_path` or `models`;
//!   `type: python` may take either (its `PythonPredictor` then gets a `python_client`), see
//!   `models.rs`;
//! - `type: command` needs `command` (a string split like a shell would, or a list of words) and
//!   refuses `path`;
//! - `image` is accepted for compatibility with cortex v0.2x files and ignored (there are no
//!   containers);
//! - the `tensorflow` predictor, and `model_path` or `models` in command predictors, are refused
//!   with what to do instead (see `schema.rs`).

use std::collections::BTreeMap;

use super::models;
use super::node::{Node, Value};
use super::problem::{quote, Problem};
use super::schema;
use super::section::Section;
use super::suggest::nearest;
use super::types::{ModelsConfig, Predictor, PredictorType};

pub(crate) const MAX_PROCESSES_PER_REPLICA: u64 = 100;

pub(crate) fn predictor(api: &Section) -> Result<Predictor, Problem> {
    let node = api.require(
        "predictor",
        "add a predictor section, e.g. \"predictor: {type: python, path: predictor.py}\"",
    )?;
    // An unsupported type explains its keys (`model_path`, `signature_key`...): said first.
    if let Some(type_node) = super::api::raw_value(node, "type") {
        if let Some(problem) = unsupported_type(type_node) {
            return Err(problem);
        }
    }
    let sec = Section::new(node, "predictor", schema::PREDICTOR)?;
    let kind = predictor_type(&sec)?;

    let path = path(&sec, kind)?;
    let command = command_of(&sec, kind)?;
    let (model_path, models) = model_locations(&sec, kind)?;
    let config = config(&sec, kind)?;
    let python_path = sec.parsed("python_path", "a directory path like \"src\"", |p| {
        relative_path(p).map(|()| p.to_string())
    })?;
    // Accepted for compatibility; there are no images to run.
    sec.text("image")?;
    let env = env(&sec)?;
    let processes_per_replica = sec.whole_u32(
        "processes_per_replica",
        1,
        1,
        MAX_PROCESSES_PER_REPLICA as u32,
    )?;
    let threads_per_process = sec.whole_u32("threads_per_process", 1, 1, u32::MAX)?;
    if processes_per_replica > 1 && models.as_ref().is_some_and(|m| m.cache_size.is_some()) {
        return Err(sec.problem(
            "processes_per_replica",
            "must be 1 when predictor.models has a cache_size (each process would keep its own \
             cache); remove cache_size and disk_cache_size, or use threads_per_process",
        ));
    }

    Ok(Predictor {
        kind,
        path,
        command,
        model_path,
        models,
        config,
        python_path,
        env,
        processes_per_replica,
        threads_per_process,
    })
}

/// `path`: the python file a python or onnx predictor loads; refused for a command.
fn path(sec: &Section, kind: PredictorType) -> Result<Option<String>, Problem> {
    match kind {
        PredictorType::Python | PredictorType::Onnx => {
            sec.require(
                "path",
                &format!(
                    "set it to the python file that defines {}, e.g. \"path: predictor.py\"",
                    kind.class_name()
                ),
            )?;
            sec.parsed("path", "a path like \"predictor.py\"", |p| {
                relative_path(p)?;
                if !p.ends_with(".py") {
                    return Err(format!(
                        "must be a python file (ending in .py), got {}",
                        quote(p)
                    ));
                }
                Ok(p.to_string())
            })
        }
        PredictorType::Command => {
            if sec.has("path") {
                return Err(sec.problem(
                    "path",
                    "is only for python and onnx predictors; a command predictor runs \
                     predictor.command (remove path, or set \"type: python\")",
                ));
            }
            Ok(None)
        }
    }
}

/// `command`: what a command predictor runs; refused for python and onnx.
fn command_of(sec: &Section, kind: PredictorType) -> Result<Option<Vec<String>>, Problem> {
    match kind {
        PredictorType::Command => {
            let node = sec.require(
                "command",
                "set it to the program to run and its arguments, e.g. \
                 \"command: python serve.py\"",
            )?;
            command(node, &sec.field("command")).map(Some)
        }
        PredictorType::Python | PredictorType::Onnx => {
            if sec.has("command") {
                return Err(sec.problem(
                    "command",
                    format!(
                        "is only for command predictors; {} predictor loads predictor.path \
                         (remove command, or set \"type: command\")",
                        if kind == PredictorType::Onnx {
                            "an onnx"
                        } else {
                            "a python"
                        }
                    ),
                ));
            }
            Ok(None)
        }
    }
}

/// `config`: the mapping handed to the predictor's `__init__`.
fn config(
    sec: &Section,
    kind: PredictorType,
) -> Result<serde_json::Map<String, serde_json::Value>, Problem> {
    match sec.get("config") {
        None => Ok(serde_json::Map::new()),
        Some(node) => {
            let field = sec.field("config");
            match node.to_json(&field)? {
                serde_json::Value::Object(map) => Ok(map),
                _ => Err(Problem::new(
                    node.pos,
                    field,
                    format!(
                        "expected a mapping of settings for {}.__init__, got {}",
                        kind.class_name(),
                        node.describe()
                    ),
                )),
            }
        }
    }
}

/// The problem with `type: tensorflow`, saying the way forward.
fn unsupported_type(node: &Node) -> Option<Problem> {
    let (text, package) = match node.text("predictor.type").ok()? {
        "tensorflow" => ("tensorflow", "tensorflow"),
        _ => return None,
    };
    Some(Problem::new(
        node.pos,
        "predictor.type",
        format!(
            "the {text} predictor is not supported yet; convert the model with tf2onnx and use \
             \"type: onnx\" (an ONNXPredictor and its model_path), or use \"type: python\" with \
             the {package} package (add it to requirements.txt, and load the model from \
             predictor.config in PythonPredictor.__init__), or \"type: command\" to run your own \
             model server"
        ),
    ))
}

fn predictor_type(sec: &Section) -> Result<PredictorType, Problem> {
    let node = sec.require(
        "type",
        "add \"type: python\" (a PythonPredictor class), \"type: onnx\" (an ONNXPredictor \
         class and its model_path) or \"type: command\" (any program)",
    )?;
    let field = sec.field("type");
    let text = node.text(&field)?;
    match text {
        "python" => Ok(PredictorType::Python),
        "command" => Ok(PredictorType::Command),
        "onnx" => Ok(PredictorType::Onnx),
        "tensorflow" => Err(unsupported_type(node).unwrap_or_else(|| {
            Problem::new(
                node.pos,
                field,
                format!("the {text} predictor is not supported"),
            )
        })),
        _ => {
            let hint = match nearest(text, &["python", "command", "onnx"]) {
                Some(near) => format!("; did you mean \"{near}\"?"),
                None => String::new(),
            };
            Err(Problem::new(
                node.pos,
                field,
                format!(
                    "unknown predictor type {}{hint} (valid types are \"python\", \"onnx\" and \
                     \"command\")",
                    quote(text)
                ),
            ))
        }
    }
}

/// `command: python serve.py --port 8080` or `command: [python, serve.py]`.
fn command(node: &Node, field: &str) -> Result<Vec<String>, Problem> {
    let words = match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| item.text(&format!("{field}[{i}]")).map(str::to_string))
            .collect::<Result<Vec<_>, _>>()?,
        Value::Scalar(_) => {
            let text = node.text(field)?;
            shell_words::split(text).map_err(|e| {
                Problem::new(
                    node.pos,
                    field,
                    format!("cannot be split into words ({e}); check the quotes"),
                )
            })?
        }
        Value::Map(_) => {
            return Err(Problem::new(
                node.pos,
                field,
                format!(
                    "expected a command line or a list of words, got {}",
                    node.describe()
                ),
            ))
        }
    };
    match words.first() {
        None => Err(Problem::new(
            node.pos,
            field,
            "is empty; set it to the program to run, e.g. \"python serve.py\"",
        )),
        Some(program) if program.trim().is_empty() => Err(Problem::new(
            node.pos,
            field,
            "starts with an empty program name",
        )),
        Some(_) => Ok(words),
    }
}

/// `env`: names to values; numbers and booleans are kept as written (`8080`, `true`).
fn env(sec: &Section) -> Result<BTreeMap<String, String>, Problem> {
    let mut env = BTreeMap::new();
    let Some(node) = sec.get("env") else {
        return Ok(env);
    };
    let field = sec.field("env");
    let Value::Map(entries) = &node.value else {
        return Err(Problem::new(
            node.pos,
            field,
            format!(
                "expected a mapping of variable names to values, got {}",
                node.describe()
            ),
        ));
    };
    let mut lines = std::collections::HashMap::new();
    for entry in entries {
        let name = entry.key.key_text(&field)?;
        let var = format!("{field}.{name}");
        if !is_env_name(name) {
            return Err(Problem::new(
                entry.key.pos,
                var,
                "is not a valid environment variable name (use letters, digits and \
                 underscores, not starting with a digit)",
            ));
        }
        if let Some(first) = lines.insert(name, entry.key.pos.line) {
            return Err(super::node::duplicate_key(&entry.key, &var, first));
        }
        if entry.value.is_null() {
            return Err(Problem::new(
                entry.value.pos,
                var,
                "has no value; write \"\" for an empty one",
            ));
        }
        let value = entry.value.text(&var)?;
        env.insert(name.to_string(), value.to_string());
    }
    Ok(env)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `model_path` and `models`: python and onnx predictors take one of them (onnx must),
/// command predictors neither.
fn model_locations(
    sec: &Section,
    kind: PredictorType,
) -> Result<(Option<String>, Option<ModelsConfig>), Problem> {
    if kind == PredictorType::Command {
        for key in ["model_path", "models"] {
            if sec.has(key) {
                return Err(sec.problem(
                    key,
                    "is only for python and onnx predictors; a command predictor finds its \
                     model itself (pass its location in predictor.env or the command)",
                ));
            }
        }
        return Ok((None, None));
    }
    let model_path = sec.parsed("model_path", "a location like \"model.onnx\"", |p| {
        models::location(p).map(|()| p.to_string())
    })?;
    let models = models::models(sec)?;
    if model_path.is_some() && models.is_some() {
        return Err(sec.problem(
            "models",
            "cannot be given with predictor.model_path; use model_path for one model, or list \
             them all in models.paths",
        ));
    }
    if kind == PredictorType::Onnx && model_path.is_none() && models.is_none() {
        return Err(Problem::new(
            sec.pos,
            sec.field("model_path"),
            "is required; set it to the exported model: a .onnx file in the project (e.g. \
             \"model_path: model.onnx\"), file:///an/absolute/path.onnx, an http(s):// URL or \
             s3://bucket/prefix (or list several models in predictor.models)",
        ));
    }
    Ok((model_path, models))
}

/// A path inside the project directory: relative, and never leaving it through `..`.
pub(crate) fn relative_path(path: &str) -> Result<(), String> {
    if path.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if path.contains('\0') {
        return Err("must not contain a NUL character".into());
    }
    let bytes = path.as_bytes();
    let windows_drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if path.starts_with(['/', '\\', '~']) || windows_drive {
        return Err(format!(
            "must be relative to the project directory (the folder with cortex.yaml), got {}",
            quote(path)
        ));
    }
    let mut depth: i64 = 0;
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!(
                        "must stay inside the project directory, but {} leaves it through \"..\"",
                        quote(path)
                    ));
                }
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::load::load;
    use super::*;

    #[test]
    fn an_unsupported_type_is_said_before_its_keys() {
        let text = message(
            "predictor: {type: tensorflow, path: a.py, model_path: s3://x, signature_key: s}",
        );
        assert!(
            text.starts_with("predictor.type: the tensorflow predictor is not supported yet")
                && text.contains("with the tensorflow package"),
            "{text}"
        );
    }

    fn parse(yaml: &str) -> Result<Predictor, Problem> {
        let node = load(yaml).unwrap().unwrap();
        let api = Section::new(&node, "", schema::API).unwrap();
        predictor(&api)
    }

    fn message(yaml: &str) -> String {
        let p = parse(yaml).unwrap_err();
        format!("{}: {}", p.field, p.message)
    }

    #[test]
    fn python_defaults() {
        let p = parse("predictor: {type: python, path: predictor.py}").unwrap();
        assert_eq!(p.kind, PredictorType::Python);
        assert_eq!(p.path.as_deref(), Some("predictor.py"));
        assert_eq!(p.command, None);
        assert!(p.config.is_empty());
        assert!(p.env.is_empty());
        assert_eq!(p.python_path, None);
        assert_eq!((p.processes_per_replica, p.threads_per_process), (1, 1));
    }

    #[test]
    fn command_from_a_string_or_a_list() {
        let p =
            parse("predictor: {type: command, command: 'python serve.py --name \"a b\"'}").unwrap();
        assert_eq!(p.command.unwrap(), ["python", "serve.py", "--name", "a b"]);
        let p = parse("predictor: {type: command, command: [./serve, --port, 80]}").unwrap();
        assert_eq!(p.command.unwrap(), ["./serve", "--port", "80"]);
        assert_eq!(p.path, None);
    }

    #[test]
    fn command_problems() {
        assert_eq!(
            message("predictor: {type: command}"),
            "predictor.command: is required; set it to the program to run and its arguments, \
             e.g. \"command: python serve.py\""
        );
        assert_eq!(
            message("predictor: {type: command, command: []}"),
            "predictor.command: is empty; set it to the program to run, e.g. \"python serve.py\""
        );
        assert!(message("predictor: {type: command, command: 'a \"b'}")
            .contains("cannot be split into words"));
        assert!(
            message("predictor: {type: command, command: x, path: a.py}")
                .starts_with("predictor.path: is only for python and onnx predictors")
        );
        assert!(message("predictor: {type: python, path: a.py, command: x}")
            .starts_with("predictor.command: is only for command predictors"));
        assert_eq!(
            message("predictor: {type: command, command: [a, [b]]}"),
            "predictor.command[1]: expected text, got a list"
        );
    }

    #[test]
    fn type_problems() {
        assert!(message("predictor: {type: tensorflow}")
            .starts_with("predictor.type: the tensorflow predictor is not supported"));
        assert_eq!(
            message("predictor: {type: pyhton}"),
            "predictor.type: unknown predictor type \"pyhton\"; did you mean \"python\"? \
             (valid types are \"python\", \"onnx\" and \"command\")"
        );
        assert!(message("predictor: {path: a.py}").starts_with("predictor.type: is required"));
        assert!(message("predictor:").starts_with("predictor: is required"));
    }

    #[test]
    fn paths_stay_inside_the_project() {
        assert!(relative_path("predictor.py").is_ok());
        assert!(relative_path("src/../predictor.py").is_ok());
        assert!(relative_path("./a/b.py").is_ok());
        assert!(relative_path("../predictor.py")
            .unwrap_err()
            .contains("leaves it"));
        assert!(relative_path("a/../../b.py")
            .unwrap_err()
            .contains("leaves it"));
        assert!(relative_path("/abs/p.py").unwrap_err().contains("relative"));
        assert!(relative_path("C:\\p.py").unwrap_err().contains("relative"));
        assert!(relative_path("~/p.py").unwrap_err().contains("relative"));
        assert!(relative_path("").is_err());
        assert_eq!(
            message("predictor: {type: python, path: predictor}"),
            "predictor.path: must be a python file (ending in .py), got \"predictor\""
        );
        assert!(
            message("predictor: {type: python, path: a.py, python_path: /usr/lib}")
                .starts_with("predictor.python_path: must be relative")
        );
    }

    #[test]
    fn config_env_and_image() {
        let p = parse(
            "predictor:\n  type: python\n  path: p.py\n  image: cortexlabs/python-predictor-cpu:0.22.0\n  \
             config: {bucket: b, n: 3, f: 0.5, on: true, list: [1, x], nested: {k: ~}}\n  \
             env: {PORT: 8080, DEBUG: true, NAME: x}\n  processes_per_replica: 4\n  \
             threads_per_process: 8\n",
        )
        .unwrap();
        assert_eq!(
            serde_json::Value::Object(p.config),
            serde_json::json!({"bucket": "b", "n": 3, "f": 0.5, "on": true, "list": [1, "x"],
                               "nested": {"k": null}})
        );
        assert_eq!(p.env["PORT"], "8080");
        assert_eq!(p.env["DEBUG"], "true");
        assert_eq!((p.processes_per_replica, p.threads_per_process), (4, 8));
    }

    #[test]
    fn config_and_env_problems() {
        assert_eq!(
            message("predictor: {type: python, path: a.py, config: [1]}"),
            "predictor.config: expected a mapping of settings for PythonPredictor.__init__, \
             got a list"
        );
        assert_eq!(
            message("predictor: {type: python, path: a.py, config: {a: {b: .nan}}}"),
            "predictor.config.a.b: \".nan\" cannot be passed on as JSON; quote it to pass it as \
             text"
        );
        assert!(
            message("predictor: {type: python, path: a.py, env: {1X: a}}")
                .starts_with("predictor.env.1X: is not a valid environment variable name")
        );
        assert_eq!(
            message("predictor: {type: python, path: a.py, env: {A: }}"),
            "predictor.env.A: has no value; write \"\" for an empty one"
        );
        assert_eq!(
            message("predictor: {type: python, path: a.py, env: {A: [1]}}"),
            "predictor.env.A: expected text, got a list"
        );
        assert_eq!(
            message("predictor: {type: python, path: a.py, processes_per_replica: one}"),
            "predictor.processes_per_replica: expected a whole number, got \"one\""
        );
        assert_eq!(
            message("predictor: {type: python, path: a.py, processes_per_replica: 101}"),
            "predictor.processes_per_replica: must be between 1 and 100, got 101"
        );
    }

    #[test]
    fn python_and_onnx_take_model_path_or_models() {
        let p =
            parse("predictor: {type: python, path: a.py, model_path: 's3://bucket/m/'}").unwrap();
        assert_eq!(p.model_path.as_deref(), Some("s3://bucket/m/"));
        let p = parse(
            "predictor: {type: onnx, path: a.py, models: {paths: [{name: a, model_path: a/}, \
             {name: b, model_path: 's3://bucket/b/'}], cache_size: 1, disk_cache_size: 2}}",
        )
        .unwrap();
        let models = p.models.unwrap();
        assert_eq!(models.paths.len(), 2);
        assert_eq!(
            (models.cache_size, models.disk_cache_size),
            (Some(1), Some(2))
        );
        let p = parse("predictor: {type: python, path: a.py, models: {dir: models/}}").unwrap();
        assert_eq!(p.models.unwrap().dir.as_deref(), Some("models/"));
    }

    #[test]
    fn a_cortex_0_21_models_list_is_models_paths() {
        for kind in ["python", "onnx"] {
            let list = parse(&format!(
                "predictor: {{type: {kind}, path: a.py, models: [{{name: a, model_path: a/}}, \
                 {{name: b, model_path: 's3://bucket/b/'}}]}}"
            ))
            .unwrap();
            let paths = parse(&format!(
                "predictor: {{type: {kind}, path: a.py, models: {{paths: [{{name: a, \
                 model_path: a/}}, {{name: b, model_path: 's3://bucket/b/'}}]}}}}"
            ))
            .unwrap();
            assert_eq!(list.models, paths.models, "{kind}");
        }
        for (yaml, expected) in [
            (
                "{type: python, path: a.py, models: [{name: a}]}",
                "predictor.models[0].model_path: is required",
            ),
            (
                "{type: onnx, path: a.py, models: [{name: a, model_path: a}, {name: a, model_path: b}]}",
                "predictor.models[1].name: \"a\" is listed twice",
            ),
            (
                "{type: onnx, path: a.py, models: []}",
                "predictor.models: must list at least one model",
            ),
            (
                "{type: onnx, path: a.py, model_path: m, models: [{name: a, model_path: a}]}",
                "predictor.models: cannot be given with predictor.model_path",
            ),
            (
                "{type: command, command: x, models: [{name: a, model_path: a}]}",
                "predictor.models: is only for python and onnx predictors",
            ),
        ] {
            let text = message(&format!("predictor: {yaml}"));
            assert!(text.starts_with(expected), "{yaml}: {text}");
        }
    }

    #[test]
    fn models_problems() {
        for (yaml, expected) in [
            (
                "{type: python, path: a.py, model_path: m, models: {dir: d}}",
                "predictor.models: cannot be given with predictor.model_path",
            ),
            (
                "{type: python, path: a.py, models: {}}",
                "predictor.models: needs paths (a list of {name, model_path}) or dir",
            ),
            (
                "{type: python, path: a.py, models: {dir: d, paths: [{name: a, model_path: a}]}}",
                "predictor.models.dir: cannot be given with models.paths",
            ),
            (
                "{type: python, path: a.py, models: {dir: 'https://h/models/'}}",
                "predictor.models.dir: \"https://h/models/\" is a URL, which cannot be listed",
            ),
            (
                "{type: python, path: a.py, models: {paths: [{name: a, model_path: a}, {name: a, model_path: b}]}}",
                "predictor.models.paths[1].name: \"a\" is listed twice",
            ),
            (
                "{type: python, path: a.py, models: {paths: [{name: a}]}}",
                "predictor.models.paths[0].model_path: is required",
            ),
            (
                "{type: python, path: a.py, models: {paths: [{name: a, model_path: 's3://A_B/x'}]}}",
                "predictor.models.paths[0].model_path: \"s3://A_B/x\": \"A_B\" is not a valid bucket name",
            ),
            (
                "{type: python, path: a.py, models: {dir: d, cache_size: 2}}",
                "predictor.models.cache_size: needs models.disk_cache_size too",
            ),
            (
                "{type: python, path: a.py, models: {dir: d, cache_size: 2, disk_cache_size: 1}}",
                "predictor.models.disk_cache_size: must be at least cache_size (2)",
            ),
            (
                "{type: python, path: a.py, processes_per_replica: 2, models: {dir: d, cache_size: 1, disk_cache_size: 1}}",
                "predictor.processes_per_replica: must be 1 when predictor.models has a cache_size",
            ),
            (
                "{type: python, path: a.py, models: {dir: d, signature_key: s}}",
                "predictor.models.signature_key: is only for the tensorflow predictor",
            ),
            (
                "{type: command, command: x, models: {dir: d}}",
                "predictor.models: is only for python and onnx predictors",
            ),
        ] {
            let text = message(&format!("predictor: {yaml}"));
            assert!(text.starts_with(expected), "{yaml}:\n{text}");
        }
    }

    #[test]
    fn onnx_takes_a_path_and_a_model_path() {
        for model_path in [
            "model.onnx",
            "models/iris/",
            "file:///srv/models/iris.onnx",
            "http://127.0.0.1:8000/model.onnx",
            "https://example.com/m/model.onnx?v=2",
            "s3://bucket/iris/",
        ] {
            let p = parse(&format!(
                "predictor: {{type: onnx, path: predictor.py, model_path: '{model_path}', \
                 config: {{k: 1}}}}"
            ))
            .unwrap();
            assert_eq!(p.kind, PredictorType::Onnx);
            assert!(p.kind.runs_shim());
            assert_eq!(p.path.as_deref(), Some("predictor.py"));
            assert_eq!(p.model_path.as_deref(), Some(model_path));
            assert_eq!(p.config["k"], 1);
        }
    }

    #[test]
    fn onnx_problems() {
        assert_eq!(
            message("predictor: {type: onnx, path: predictor.py}"),
            "predictor.model_path: is required; set it to the exported model: a .onnx file in \
             the project (e.g. \"model_path: model.onnx\"), file:///an/absolute/path.onnx, an \
             http(s):// URL or s3://bucket/prefix (or list several models in predictor.models)"
        );
        assert!(
            message("predictor: {type: onnx, model_path: m.onnx}").starts_with(
                "predictor.path: is required; set it to the python file that defines ONNXPredictor"
            )
        );
        for (model_path, needle) in [
            ("gs://b/m.onnx", "gs://, which is not supported"),
            ("../m.onnx", "leaves it"),
            ("/abs/m.onnx", "relative to the project directory"),
            ("file://m.onnx", "absolute path after file://"),
            ("http:///m.onnx", "is not a valid URL"),
        ] {
            let text = message(&format!(
                "predictor: {{type: onnx, path: p.py, model_path: '{model_path}'}}"
            ));
            assert!(
                text.starts_with("predictor.model_path: ") && text.contains(needle),
                "{text}"
            );
        }
        assert!(
            message("predictor: {type: onnx, path: p.py, model_path: m.onnx, command: x}")
                .starts_with("predictor.command: is only for command predictors; an onnx")
        );
        assert!(
            message("predictor: {type: command, command: x, model_path: m.onnx}")
                .starts_with("predictor.model_path: is only for python and onnx predictors")
        );
        assert!(
            message("predictor: {type: tensorflow, path: p.py, model_path: s3://x}")
                .starts_with("predictor.type: the tensorflow predictor is not supported")
        );
    }
}
