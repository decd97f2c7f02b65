//! `-o pretty|json|yaml`.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Pretty,
    Json,
    Yaml,
}

/// Prints `value` as JSON or YAML; false for `pretty` (the caller renders it).
pub fn print_structured<T: Serialize>(format: OutputFormat, value: &T) -> anyhow::Result<bool> {
    match format {
        OutputFormat::Pretty => Ok(false),
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(value)?);
            Ok(true)
        }
        OutputFormat::Yaml => {
            print!("{}", serde_yaml::to_string(value)?);
            Ok(true)
        }
    }
}

/// `v` as `-o json|yaml` writes it (`None` for `pretty`); with `--watch`, each refresh is one
/// line of JSON (JSON lines) or one YAML document after `---`.
pub fn structured<T: Serialize>(
    output: OutputFormat,
    watch: bool,
    v: &T,
) -> anyhow::Result<Option<String>> {
    Ok(match (output, watch) {
        (OutputFormat::Pretty, _) => None,
        (OutputFormat::Json, false) => Some(serde_json::to_string_pretty(v)? + "\n"),
        (OutputFormat::Json, true) => Some(serde_json::to_string(v)? + "\n"),
        (OutputFormat::Yaml, false) => Some(serde_yaml::to_string(v)?),
        (OutputFormat::Yaml, true) => Some(format!("---\n{}", serde_yaml::to_string(v)?)),
    })
}
