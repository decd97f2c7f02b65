//! Where a predictor's models are (cortex 0.22): `predictor.model_path` (one model) or
//! `predictor.models` (`paths: [{name, model_path}]` or `dir`, with `cache_size` and
//! `disk_cache_size`), for python and onnx predictors. cortex 0.20 and 0.21's `models`, a list
//! of `{name, model_path}`, is read as `models.paths`.
//!
//! A location is a path in the project, `file:///<absolute path>`, an `http(s)://` URL (one
//! file: it cannot be listed, so it has no versions and is not a `models.dir`) or
//! `s3://bucket/prefix`. What is at a location is the runtime's to find (versions, live
//! reloading); the server checks that project paths exist when the project arrives.

use super::node::Value;
use super::predictor::relative_path;
use super::problem::{quote, Problem};
use super::schema;
use super::section::Section;
use super::types::{ModelsConfig, NamedModel};

/// Where the locations may be written, for messages.
const FORMS: &str = "a path in the project (e.g. \"models/iris/\"), file:///an/absolute/path, \
                     an http(s):// URL or s3://bucket/prefix";

/// `predictor.models`, when set.
pub(crate) fn models(predictor: &Section) -> Result<Option<ModelsConfig>, Problem> {
    if !predictor.has("models") {
        return Ok(None);
    }
    let field = predictor.field("models");
    if let Some(node) = predictor
        .get("models")
        .filter(|n| matches!(n.value, Value::Seq(_)))
    {
        // cortex 0.20 and 0.21: a list of {name, model_path}, which 0.22 calls models.paths.
        return Ok(Some(ModelsConfig {
            paths: named_paths(node, &field)?,
            dir: None,
            cache_size: None,
            disk_cache_size: None,
        }));
    }
    let sec = predictor.section("models", schema::MODELS)?;
    let dir = sec.parsed("dir", "a location like \"s3://bucket/models/\"", |d| {
        if d.split_once("://")
            .is_some_and(|(s, _)| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
        {
            return Err(format!(
                "{} is a URL, which cannot be listed; give a directory: a path in the project, \
                 file:///... or s3://bucket/prefix, or name each model in models.paths",
                quote(d)
            ));
        }
        location(d).map(|()| d.to_string())
    })?;
    let paths = match sec.get("paths") {
        None => Vec::new(),
        Some(node) => named_paths(node, &sec.field("paths"))?,
    };
    match (dir.is_some(), paths.is_empty()) {
        (true, false) => {
            return Err(sec.problem("dir", "cannot be given with models.paths; use one of them"))
        }
        (false, true) => {
            return Err(Problem::new(
                sec.pos,
                &field,
                "needs paths (a list of {name, model_path}) or dir (a directory with one \
                 subdirectory per model)",
            ))
        }
        _ => {}
    }
    let cache_size = optional_count(&sec, "cache_size")?;
    let disk_cache_size = optional_count(&sec, "disk_cache_size")?;
    match (cache_size, disk_cache_size) {
        (Some(_), None) => {
            return Err(sec.problem(
                "cache_size",
                "needs models.disk_cache_size too (how many models to keep on disk, at least \
                 cache_size)",
            ))
        }
        (None, Some(_)) => {
            return Err(sec.problem(
                "disk_cache_size",
                "needs models.cache_size too (how many models to keep in memory)",
            ))
        }
        (Some(memory), Some(disk)) if disk < memory => {
            return Err(sec.problem(
                "disk_cache_size",
                format!(
                    "must be at least cache_size ({memory}): the models in memory are on disk \
                     too"
                ),
            ))
        }
        _ => {}
    }
    Ok(Some(ModelsConfig {
        paths,
        dir,
        cache_size,
        disk_cache_size,
    }))
}

fn optional_count(sec: &Section, key: &str) -> Result<Option<u32>, Problem> {
    if !sec.has(key) {
        return Ok(None);
    }
    sec.whole_u32(key, 1, 1, u32::MAX).map(Some)
}

fn named_paths(node: &super::node::Node, field: &str) -> Result<Vec<NamedModel>, Problem> {
    let Value::Seq(items) = &node.value else {
        return Err(Problem::new(
            node.pos,
            field,
            format!(
                "expected a list of {{name, model_path}} entries, got {}",
                node.describe()
            ),
        ));
    };
    let mut out: Vec<NamedModel> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let sec = Section::new(item, &format!("{field}[{i}]"), schema::MODEL_PATH)?;
        let name_node = sec.require("name", "name the model, e.g. \"name: iris\"")?;
        let name = name_node.text(&sec.field("name"))?.trim().to_string();
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(sec.problem("name", "must be a name like \"iris\""));
        }
        if out.iter().any(|m| m.name == name) {
            return Err(sec.problem(
                "name",
                format!(
                    "{} is listed twice; give each model its own name",
                    quote(&name)
                ),
            ));
        }
        sec.require(
            "model_path",
            &format!("set it to where the model is: {FORMS}"),
        )?;
        let model_path = sec
            .parsed("model_path", "a location like \"s3://bucket/iris/\"", |p| {
                location(p).map(|()| p.to_string())
            })?
            .unwrap_or_default();
        out.push(NamedModel { name, model_path });
    }
    if out.is_empty() {
        return Err(Problem::new(
            node.pos,
            field,
            "must list at least one model",
        ));
    }
    Ok(out)
}

/// A model's location: a path inside the project, `file:///<absolute path>`, an `http(s)://`
/// URL with a host, or `s3://<bucket>/<prefix>`.
pub(crate) fn location(text: &str) -> Result<(), String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return relative_path(text);
    };
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "must not contain spaces or control characters: {}",
            quote(text)
        ));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "s3" => {
            let bucket = rest.split('/').next().unwrap_or_default();
            bucket_name(bucket).map_err(|why| format!("{}: {why}", quote(text)))
        }
        "file" => {
            if !rest.starts_with('/') || rest.len() < 2 {
                return Err(format!(
                    "must be an absolute path after file://, like \"file:///models/iris/\", got {}",
                    quote(text)
                ));
            }
            Ok(())
        }
        "http" | "https" => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = host.rsplit('@').next().unwrap_or_default();
            if host.is_empty() {
                return Err(format!("is not a valid URL: {}", quote(text)));
            }
            Ok(())
        }
        _ => Err(format!(
            "{} uses {scheme}://, which is not supported; use {FORMS}",
            quote(text)
        )),
    }
}

/// S3's rules for a bucket name: 3 to 63 lower-case letters, digits, dots and hyphens, starting
/// and ending with a letter or digit.
pub(crate) fn bucket_name(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("names no bucket; write s3://my-bucket/path/".into());
    }
    let ok_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&bucket.len())
        || !ok_chars
        || !ends_ok(bucket.chars().next())
        || !ends_ok(bucket.chars().last())
    {
        return Err(format!(
            "{} is not a valid bucket name (3 to 63 lower-case letters, digits, dots and hyphens)",
            quote(bucket)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        for ok in [
            "models/iris/",
            "file:///srv/models/iris.onnx",
            "https://example.com/iris.onnx",
            "s3://cortex-examples/onnx/iris/",
            "s3://my.bucket-1",
        ] {
            assert_eq!(location(ok), Ok(()), "{ok}");
        }
        for (bad, needle) in [
            ("/abs/path", "relative to the project"),
            ("../up", "leaves it"),
            ("file://relative", "absolute path after file://"),
            ("http:///nohost", "not a valid URL"),
            ("s3://", "names no bucket"),
            ("s3://Upper_Case/x", "not a valid bucket name"),
            ("gs://bucket/x", "gs://, which is not supported"),
            ("s3://bucket/a b", "spaces"),
        ] {
            let e = location(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
