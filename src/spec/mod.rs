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
//! Every problem found is returned at once, as a compiler does, in a [`SpecError`], one line
//! each, e.g.
//! `cortex.yaml:5:5: api "iris": predictor.typ: unknown key; did you mean "type"?`.

mod api;
mod autoscaling;
mod compute;
mod document;
mod load;
mod locate;
mod models;
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
pub use locate::locate;
pub use quantity::{Cpu, Duration, Mem, QuantityError, Surge};
pub use types::*;

use std::path::Path;

/// The problems of a `cortex.yaml`, located in the file: the first one, and `also` every other
/// one found (each API's sections are all checked), in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// The other problems of the file (each without `also` of its own).
    pub also: Vec<SpecError>,
}

/// One line per problem, `file:line:column: message`.
impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        for other in &self.also {
            write!(f, "\n{other}")?;
        }
        Ok(())
    }
}

impl SpecError {
    /// Every problem, the first one included.
    pub fn count(&self) -> usize {
        1 + self.also.len()
    }

    fn from_problems(file: &str, problems: Vec<problem::Problem>) -> SpecError {
        let mut located = problems.into_iter().map(|problem| SpecError {
            file: file.to_string(),
            line: problem.pos.line,
            column: problem.pos.column,
            message: problem.sentence(),
            field: problem.field,
            also: Vec::new(),
        });
        let mut first = located.next().unwrap_or_else(|| SpecError {
            file: file.to_string(),
            line: 0,
            column: 0,
            field: String::new(),
            message: "the file has a problem that could not be located".to_string(),
            also: Vec::new(),
        });
        first.also = located.collect();
        first
    }
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
        also: Vec::new(),
    })?;
    parse_str(&text, &name)
}

/// Validates config text; `file` is how errors name it.
pub fn parse_str(text: &str, file: &str) -> Result<Vec<ApiSpec>, SpecError> {
    let root = load::load(text).map_err(|p| SpecError::from_problems(file, vec![p]))?;
    document::apis(root.as_ref()).map_err(|found| SpecError::from_problems(file, found))
}

#[cfg(test)]
mod tests;
