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
