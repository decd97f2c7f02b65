//! [`Section`]: one mapping of an API (`predictor:`, `compute:`, … or the API itself) with its
//! keys checked, and typed lookups that report problems at the right position.

use std::collections::HashMap;

use super::node::{duplicate_key, join, Node, Pos, Value};
use super::problem::Problem;
use super::schema;

pub(crate) struct Section<'a> {
    /// Dotted path of the mapping: `""` for the API itself, `predictor`, …
    path: String,
    /// Where the mapping starts (for "is required" problems); the parent key when absent.
    pub pos: Pos,
    entries: Vec<(&'a str, &'a Node, &'a Node)>,
}

impl<'a> Section<'a> {
    /// Checks that `node` is a mapping whose keys are all in `allowed`, each set once.
    pub fn new(node: &'a Node, path: &str, allowed: &[&str]) -> Result<Section<'a>, Problem> {
        let Value::Map(map) = &node.value else {
            return Err(Problem::new(
                node.pos,
                path,
                format!(
                    "expected a mapping (indented \"key: value\" lines), got {}",
                    node.describe()
                ),
            ));
        };
        let mut entries = Vec::with_capacity(map.len());
        let mut lines: HashMap<&str, usize> = HashMap::new();
        for entry in map {
            let key = entry.key.key_text(path)?;
            let field = join(path, key);
            if !allowed.contains(&key) {
                return Err(Problem::new(
                    entry.key.pos,
                    field,
                    schema::unknown_key(path, key, allowed),
                ));
            }
            if let Some(first) = lines.insert(key, entry.key.pos.line) {
                return Err(duplicate_key(&entry.key, &field, first));
            }
            entries.push((key, &entry.key, &entry.value));
        }
        Ok(Section {
            path: path.to_string(),
            pos: node.pos,
            entries,
        })
    }

    /// A section that is not in the file: every lookup finds nothing.
    pub fn absent(path: &str, pos: Pos) -> Section<'a> {
        Section {
            path: path.to_string(),
            pos,
            entries: Vec::new(),
        }
    }

    /// The sub-section under `key` (absent when missing or null).
    pub fn section(&self, key: &str, allowed: &[&str]) -> Result<Section<'a>, Problem> {
        match self.get(key) {
            Some(node) => Section::new(node, &self.field(key), allowed),
            None => Ok(Section::absent(&self.field(key), self.key_pos(key))),
        }
    }

    /// The dotted path of `key` in this section, e.g. `predictor.type`.
    pub fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The value of `key`, unless it is missing or null.
    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
            .filter(|v| !v.is_null())
    }

    /// Where `key` is written, or where the section starts when it is not.
    pub fn key_pos(&self, key: &str) -> Pos {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map_or(self.pos, |(_, k, _)| k.pos)
    }

    /// Where the value of `key` is, or where the section starts when it is not set.
    pub fn value_pos(&self, key: &str) -> Pos {
        self.get(key).map_or(self.pos, |v| v.pos)
    }

    /// Whether `key` is set to something other than null.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The value of `key`, or a problem at the section saying it is required (`hint` says what
    /// to write).
    pub fn require(&self, key: &str, hint: &str) -> Result<&'a Node, Problem> {
        self.get(key)
            .ok_or_else(|| Problem::new(self.pos, self.field(key), format!("is required; {hint}")))
    }

    pub fn text(&self, key: &str) -> Result<Option<&'a str>, Problem> {
        self.get(key).map(|v| v.text(&self.field(key))).transpose()
    }

    /// A whole number within `min..=max`, or `default` when not set.
    pub fn whole(&self, key: &str, default: u64, min: u64, max: u64) -> Result<u64, Problem> {
        let Some(node) = self.get(key) else {
            return Ok(default);
        };
        let field = self.field(key);
        let value = node.whole(&field)?;
        if value < min || value > max {
            return Err(Problem::new(node.pos, field, range(value, min, max)));
        }
        Ok(value)
    }

    /// Like [`Section::whole`], for `u32` fields.
    pub fn whole_u32(&self, key: &str, default: u32, min: u32, max: u32) -> Result<u32, Problem> {
        let value = self.whole(key, default.into(), min.into(), max.into())?;
        // In range by construction; the fallback is never taken.
        Ok(u32::try_from(value).unwrap_or(max))
    }

    /// A finite number, or `default` when not set.
    pub fn number(&self, key: &str, default: f64) -> Result<f64, Problem> {
        match self.get(key) {
            Some(node) => node.number(&self.field(key)),
            None => Ok(default),
        }
    }

    /// Text parsed by `parse` (whose error is the problem's message), or `None` when not set.
    /// `expected` names what a list or a mapping should have been, e.g. `a cpu quantity`.
    pub fn parsed<T>(
        &self,
        key: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Problem> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        let field = self.field(key);
        let Ok(text) = node.text(&field) else {
            return Err(Problem::new(
                node.pos,
                field,
                format!("expected {expected}, got {}", node.describe()),
            ));
        };
        parse(text)
            .map(Some)
            .map_err(|message| Problem::new(node.pos, field, message))
    }

    /// A problem with the value of `key` (at the value, or at the section when not set).
    pub fn problem(&self, key: &str, message: impl Into<String>) -> Problem {
        Problem::new(self.value_pos(key), self.field(key), message)
    }
}

fn range(value: u64, min: u64, max: u64) -> String {
    if max == u64::from(u32::MAX) || max == u64::MAX {
        format!("must be at least {min}, got {value}")
    } else {
        format!("must be between {min} and {max}, got {value}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::load::load;
    use super::*;

    fn with_section<T>(
        yaml: &str,
        allowed: &[&str],
        f: impl FnOnce(Result<Section, Problem>) -> T,
    ) -> T {
        let node = load(yaml).unwrap().unwrap();
        f(Section::new(&node, "predictor", allowed))
    }

    #[test]
    fn unknown_keys_are_reported_at_the_key() {
        with_section("type: python\ntyp: x\n", schema::PREDICTOR, |s| {
            let err = s.err().unwrap();
            assert_eq!(err.pos, Pos { line: 2, column: 1 });
            assert_eq!(err.field, "predictor.typ");
            assert_eq!(err.message, "unknown key; did you mean \"type\"?");
        });
    }

    #[test]
    fn duplicate_keys_name_the_first_line() {
        with_section(
            "type: python\npath: a.py\ntype: command\n",
            schema::PREDICTOR,
            |s| {
                let err = s.err().unwrap();
                assert_eq!(err.pos, Pos { line: 3, column: 1 });
                assert_eq!(
                    err.message,
                    "is set twice; the first is on line 1; remove one of them"
                );
            },
        );
    }

    #[test]
    fn non_mappings_are_refused() {
        with_section("- a\n", schema::PREDICTOR, |s| {
            let err = s.err().unwrap();
            assert_eq!(
                err.message,
                "expected a mapping (indented \"key: value\" lines), got a list"
            );
        });
    }

    #[test]
    fn lookups_apply_defaults_and_ranges() {
        with_section(
            "processes_per_replica: 0\nthreads_per_process: ~\n",
            schema::PREDICTOR,
            |s| {
                let s = s.unwrap();
                assert_eq!(s.whole("threads_per_process", 1, 1, u64::MAX).unwrap(), 1);
                let err = s.whole("processes_per_replica", 1, 1, 100).unwrap_err();
                assert_eq!(err.message, "must be between 1 and 100, got 0");
                assert_eq!(
                    err.pos,
                    Pos {
                        line: 1,
                        column: 24
                    }
                );
                let err = s.require("type", "add \"type: python\"").unwrap_err();
                assert_eq!(err.field, "predictor.type");
                assert_eq!(err.message, "is required; add \"type: python\"");
            },
        );
    }
}
