//! `cortex.yaml`: raw YAML → validated [`ApiSpec`]s with defaults filled in.
//!
//! Pure: no IO besides reading the file in [`parse_file`]; never panics on user input. Errors
//! name the file, line, column and field, and suggest the nearest valid key.
//!
//! How it reads a file (one module per step):
//! - `load`: YAML text → a `node` tree where every key and value knows its line and column
//!   (yaml-rust2's event parser; anchors, aliases and merge keys expanded, size limits applied);
//! - `document`: the file is a non-empty list of APIs with unique names and endpoints;
//! - `api`: one entry → [`ApiSpec`] (`name`, `kind`), then one module per section: `predictor`,
//!   `compute`, `autoscaling`, `update_strategy`, `networking`, `monitoring`;
//! - `section`: a mapping whose keys are checked against `schema` (unknown keys get the nearest
//!   valid key from `suggest`), with typed lookups; `quantity`: cpu, memory, durations, surges.
//!
//! The first problem found is returned as a [`SpecError`], e.g.
//! `cortex.yaml:5:5: api "iris": predictor.typ: unknown key; did you mean "type"?`.

mod api;
mod autoscaling;
mod compute;
mod document;
mod load;
mod monitoring;
mod networking;
mod node;
mod predictor;
mod problem;
mod quantity;
mod schema;
mod section;
mod splitter;
mod suggest;
mod types;
mod update_strategy;

pub use api::{check_api_name, check_given_name, route_name};
pub use quantity::{Cpu, Duration, Mem, QuantityError, Surge};
pub use types::*;

use std::path::Path;

/// A problem with a `cortex.yaml`, located in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct SpecError {
    pub file: String,
    /// 1-based; 0 when the problem has no position (e.g. an unreadable file).
    pub line: usize,
    pub column: usize,
    /// The dotted path of the field, e.g. `predictor.type` (empty for the document itself).
    pub field: String,
    /// The sentence after the position: the API (when its name is known and the problem is
    /// not the name), the field and what is wrong, e.g.
    /// `api "iris": predictor.typ: unknown key; did you mean "type"?`.
    pub message: String,
}

/// Reads and validates a config file; errors name it as `path` is written.
pub fn parse_file(path: &Path) -> Result<Vec<ApiSpec>, SpecError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SpecError {
        file: name.clone(),
        line: 0,
        column: 0,
        field: String::new(),
        message: format!("cannot read the file: {e}"),
    })?;
    parse_str(&text, &name)
}

/// Validates config text; `file` is how errors name it.
pub fn parse_str(text: &str, file: &str) -> Result<Vec<ApiSpec>, SpecError> {
    load::load(text)
        .and_then(|root| document::apis(root.as_ref()))
        .map_err(|problem| SpecError {
            file: file.to_string(),
            line: problem.pos.line,
            column: problem.pos.column,
            message: problem.sentence(),
            field: problem.field,
        })
}

#[cfg(test)]
mod tests;
