//! [`Problem`]: a validation error before it is tied to a file (see [`super::SpecError`]).

use super::node::Pos;

/// What is wrong, where, and with which field; `parse_str` adds the file name and the API name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub pos: Pos,
    /// Dotted path from the API, e.g. `predictor.type`; empty for the document itself.
    pub field: String,
    /// What is wrong, without the field, e.g. `unknown key; did you mean "type"?`.
    pub message: String,
    /// The name of the API the problem is in, when it is known and the problem is not the name.
    pub api: Option<String>,
}

impl Problem {
    pub fn new(pos: Pos, field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            pos,
            field: field.into(),
            message: message.into(),
            api: None,
        }
    }

    /// The sentence shown after the position: `api "iris": predictor.typ: unknown key; …`.
    pub fn sentence(&self) -> String {
        let mut out = String::new();
        if let Some(api) = &self.api {
            out.push_str(&format!("api {}: ", quote(api)));
        }
        if !self.field.is_empty() {
            out.push_str(&self.field);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        out
    }
}

/// `text` in double quotes, shortened to 40 characters and with control characters escaped, so
/// that any user input reads well inside a message.
pub(crate) fn quote(text: &str) -> String {
    const MAX: usize = 40;
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_has_api_and_field_when_known() {
        let mut p = Problem::new(Pos { line: 3, column: 5 }, "predictor.typ", "unknown key");
        assert_eq!(p.sentence(), "predictor.typ: unknown key");
        p.api = Some("iris".into());
        assert_eq!(p.sentence(), "api \"iris\": predictor.typ: unknown key");
        p.field.clear();
        assert_eq!(p.sentence(), "api \"iris\": unknown key");
    }

    #[test]
    fn quote_escapes_and_shortens() {
        assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
        let long = "x".repeat(50);
        assert_eq!(quote(&long), format!("\"{}…\"", "x".repeat(40)));
    }
}
