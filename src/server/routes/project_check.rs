//! What a deploy checks in a project's files: the predictor's file and the model locations its
//! spec names are there (paths relative to the `cortex.yaml`), and an onnx model is one
//! `.onnx` file per version.

use crate::spec::ApiSpec;

/// Checks that the files the spec names are in the project.
pub(super) fn check_project(
    spec: &ApiSpec,
    project_dir: &std::path::Path,
    config_file: &str,
) -> Result<(), String> {
    let Some(predictor) = &spec.predictor else {
        return Ok(());
    };
    if predictor.kind.runs_shim() {
        let path = predictor.path.as_deref().unwrap_or_default();
        if !project_dir.join(path).is_file() {
            return Err(format!(
                "predictor.path: {path:?} is not in the project; put it next to {config_file} (paths are relative to that directory) or fix the path"
            ));
        }
    }
    let onnx = predictor.kind == crate::spec::PredictorType::Onnx;
    let named = predictor.models.iter().flat_map(|m| {
        m.paths.iter().enumerate().map(|(i, p)| {
            (
                format!("predictor.models.paths[{i}].model_path"),
                p.model_path.as_str(),
            )
        })
    });
    let single = predictor
        .model_path
        .as_deref()
        .map(|p| ("predictor.model_path".to_string(), p));
    for (field, location) in single.into_iter().chain(named) {
        if let Some(problem) = project_model(project_dir, location, onnx) {
            return Err(format!(
                "{field}: {location:?} is {problem}; put the model next to {config_file} (paths are relative to that directory), or give a file:///, http(s):// or s3:// location"
            ));
        }
    }
    if let Some(dir) = predictor.models.as_ref().and_then(|m| m.dir.as_deref()) {
        if !dir.contains("://") && !project_dir.join(dir).is_dir() {
            return Err(format!(
                "predictor.models.dir: {dir:?} is not a directory in the project; put the models (one subdirectory each) next to {config_file}, or give a file:/// or s3:// location"
            ));
        }
    }
    Ok(())
}

/// What is wrong with a model location in the project (None when it is elsewhere or fine): it
/// must be there, and an onnx model (each version of it) must be one `.onnx` file or a
/// directory holding exactly one.
fn project_model(
    project_dir: &std::path::Path,
    location: &str,
    onnx: bool,
) -> Option<&'static str> {
    if location.contains("://") {
        return None;
    }
    let at = project_dir.join(location);
    if at.is_file() {
        return None;
    }
    if !at.is_dir() {
        return Some("not in the project");
    }
    if !onnx {
        return None;
    }
    let versions: Vec<std::path::PathBuf> = std::fs::read_dir(&at)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    e.path().is_dir()
                        && e.file_name()
                            .to_string_lossy()
                            .bytes()
                            .all(|b| b.is_ascii_digit())
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    if versions.is_empty() {
        return (onnx_files_in(&at) != 1)
            .then_some("a directory without exactly one .onnx file in it");
    }
    versions.iter().any(|v| onnx_files_in(v) != 1).then_some(
        "a directory with a version subdirectory that does not hold exactly one .onnx file",
    )
}

/// How many `.onnx` files `dir` holds (not counting its subdirectories).
fn onnx_files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.path().is_file() && e.file_name().to_string_lossy().ends_with(".onnx"))
            .count()
    })
}
