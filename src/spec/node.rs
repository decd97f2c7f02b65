//! [`Node`]: a YAML value that knows where it starts in the file, and the typed reads of it
//! (text, whole numbers, numbers, JSON) that turn a wrong type into a [`Problem`].
//!
//! Plain scalars resolve with the YAML 1.2 core schema (as serde_yaml 0.9 does): `~`/`null`/empty
//! are null, `true`/`false` are booleans, `12`, `0x1f`, `0o17` are integers, `1.5`, `1e3`, `.inf`
//! are floats; `yes`/`no`/`on`/`off` stay text. Quoted and block scalars are always text, unless
//! tagged `!!int`, `!!float`, `!!bool` or `!!null`; `!!str` makes a plain scalar text.

use super::problem::{quote, Problem};

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in file order; duplicate keys are kept (sections report them).
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: Node,
    pub value: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar {
    pub text: String,
    /// Written without quotes and not as a `|`/`>` block: subject to type resolution.
    pub plain: bool,
    /// The suffix of a YAML core tag (`str` for `!!str`); other tags are ignored.
    pub tag: Option<String>,
}

/// The meaning of a scalar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
}

impl Scalar {
    pub fn resolve(&self) -> Resolved<'_> {
        let text = self.text.as_str();
        match self.tag.as_deref() {
            Some("str") => return Resolved::Str(text),
            Some("null") => return Resolved::Null,
            Some("bool") => return parse_bool(text).map_or(Resolved::Str(text), Resolved::Bool),
            Some("int") => return parse_int(text).map_or(Resolved::Str(text), Resolved::Int),
            Some("float") => {
                return parse_float(text)
                    .or_else(|| parse_int(text).map(|i| i as f64))
                    .map_or(Resolved::Str(text), Resolved::Float)
            }
            _ => {}
        }
        if !self.plain {
            return Resolved::Str(text);
        }
        if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
            return Resolved::Null;
        }
        if let Some(b) = parse_bool(text) {
            return Resolved::Bool(b);
        }
        if let Some(i) = parse_int(text) {
            return Resolved::Int(i);
        }
        if let Some(f) = parse_float(text) {
            return Resolved::Float(f);
        }
        Resolved::Str(text)
    }
}

/// YAML 1.1's extra booleans, for plain untagged scalars only (`"no"` stays text).
fn yaml11_bool(scalar: &Scalar, text: &str) -> Option<bool> {
    if !scalar.plain || scalar.tag.is_some() {
        return None;
    }
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// YAML 1.2 core integers: `[-+]?[0-9]+`, `0o[0-7]+`, `0x[0-9a-fA-F]+`.
pub(crate) fn parse_int(text: &str) -> Option<i128> {
    if let Some(hex) = text.strip_prefix("0x") {
        return parse_digits(hex, 16);
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return parse_digits(oct, 8);
    }
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let value = parse_digits(digits, 10)?;
    Some(if negative { -value } else { value })
}

fn parse_digits(digits: &str, radix: u32) -> Option<i128> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    i128::from_str_radix(digits, radix).ok()
}

/// YAML 1.2 core floats: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, `.inf`, `.nan`.
fn parse_float(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return Some(if text.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(frac) => all_digits(int) && all_digits(frac) && !(int.is_empty() && frac.is_empty()),
        None => !int.is_empty() && all_digits(int),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    if !mantissa_ok || !exponent_ok {
        return None;
    }
    text.parse::<f64>().ok()
}

impl Node {
    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        self.scalar().is_some_and(|s| s.resolve() == Resolved::Null)
    }

    /// How the node reads in a message: `"one"`, `a list`, `a mapping`, `nothing`.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Scalar(s) if s.resolve() == Resolved::Null => "nothing".into(),
            Value::Scalar(s) => quote(&s.text),
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a mapping".into(),
        }
    }

    fn wrong_type(&self, field: &str, expected: &str) -> Problem {
        Problem::new(
            self.pos,
            field,
            format!("expected {expected}, got {}", self.describe()),
        )
    }

    /// Any non-null scalar, as written (`8080` and `true` are text too).
    pub fn text(&self, field: &str) -> Result<&str, Problem> {
        match self.scalar() {
            Some(s) if s.resolve() != Resolved::Null => Ok(&s.text),
            _ => Err(self.wrong_type(field, "text")),
        }
    }

    /// A whole number ≥ 0 (quoted digits are accepted too).
    pub fn whole(&self, field: &str) -> Result<u64, Problem> {
        let Some(scalar) = self.scalar() else {
            return Err(self.wrong_type(field, "a whole number"));
        };
        match parse_int(scalar.text.trim()) {
            Some(n) if n < 0 => Err(Problem::new(
                self.pos,
                field,
                format!("must not be negative, got {n}"),
            )),
            Some(n) => u64::try_from(n)
                .map_err(|_| Problem::new(self.pos, field, format!("{n} is too large"))),
            None => Err(self.wrong_type(field, "a whole number")),
        }
    }

    /// A finite number (integer or decimal; quoted numbers are accepted too).
    pub fn number(&self, field: &str) -> Result<f64, Problem> {
        let Some(scalar) = self.scalar() else {
            return Err(self.wrong_type(field, "a number"));
        };
        let text = scalar.text.trim();
        let value = parse_int(text)
            .map(|i| i as f64)
            .or_else(|| parse_float(text))
            .ok_or_else(|| self.wrong_type(field, "a number"))?;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(Problem::new(
                self.pos,
                field,
                format!("must be a finite number, got {}", quote(text)),
            ))
        }
    }

    /// The node as JSON (for `predictor.config`); `field` is this node's dotted path.
    ///
    /// Keys become text; NaN and infinities are refused because JSON cannot hold them.
    pub fn to_json(&self, field: &str) -> Result<serde_json::Value, Problem> {
        use serde_json::Value as J;
        match &self.value {
            Value::Scalar(s) => Ok(match s.resolve() {
                Resolved::Null => J::Null,
                Resolved::Bool(b) => J::Bool(b),
                Resolved::Int(i) => {
                    if let Ok(i) = i64::try_from(i) {
                        J::from(i)
                    } else if let Ok(u) = u64::try_from(i) {
                        J::from(u)
                    } else {
                        float_json(i as f64, self, field)?
                    }
                }
                Resolved::Float(f) => float_json(f, self, field)?,
                // cortex 0.2x read cortex.yaml as YAML 1.1, where `yes`/`no`/`on`/`off` are
                // booleans: a predictor's `config: {debug: no}` must not arrive as "no".
                Resolved::Str(t) => match yaml11_bool(s, t) {
                    Some(b) => J::Bool(b),
                    None => J::String(t.to_string()),
                },
            }),
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| item.to_json(&format!("{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(J::Array),
            Value::Map(entries) => {
                let mut object = serde_json::Map::new();
                let mut lines = std::collections::HashMap::new();
                for entry in entries {
                    let key = entry.key.key_text(field)?;
                    let child = join(field, key);
                    if let Some(first) = lines.insert(key.to_string(), entry.key.pos.line) {
                        return Err(duplicate_key(&entry.key, &child, first));
                    }
                    object.insert(key.to_string(), entry.value.to_json(&child)?);
                }
                Ok(J::Object(object))
            }
        }
    }

    /// The text of a mapping key; `parent` is the mapping's path. Null keys read as `null`.
    pub fn key_text(&self, parent: &str) -> Result<&str, Problem> {
        match self.scalar() {
            Some(s) if s.text.is_empty() && s.plain => Ok("null"),
            Some(s) => Ok(&s.text),
            None => Err(Problem::new(
                self.pos,
                parent,
                format!("keys must be plain text, got {}", self.describe()),
            )),
        }
    }
}

fn float_json(f: f64, node: &Node, field: &str) -> Result<serde_json::Value, Problem> {
    serde_json::Number::from_f64(f)
        .map(serde_json::Value::Number)
        .ok_or_else(|| {
            Problem::new(
                node.pos,
                field,
                format!(
                    "{} cannot be passed on as JSON; quote it to pass it as text",
                    node.describe()
                ),
            )
        })
}

/// `parent.key`, or `key` at the top.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub(crate) fn duplicate_key(key: &Node, field: &str, first_line: usize) -> Problem {
    Problem::new(
        key.pos,
        field,
        format!("is set twice; the first is on line {first_line}; remove one of them"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> Node {
        Node {
            pos: Pos { line: 1, column: 1 },
            value: Value::Scalar(Scalar {
                text: text.into(),
                plain: true,
                tag: None,
            }),
        }
    }

    #[test]
    fn resolves_the_core_schema() {
        let r = |t: &str| {
            let n = plain(t);
            format!("{:?}", n.scalar().unwrap().resolve())
        };
        assert_eq!(r("~"), "Null");
        assert_eq!(r(""), "Null");
        assert_eq!(r("true"), "Bool(true)");
        assert_eq!(r("yes"), "Str(\"yes\")");
        assert_eq!(r("12"), "Int(12)");
        assert_eq!(r("-3"), "Int(-3)");
        assert_eq!(r("0x1f"), "Int(31)");
        assert_eq!(r("0o17"), "Int(15)");
        assert_eq!(r("1.5"), "Float(1.5)");
        assert_eq!(r(".5"), "Float(0.5)");
        assert_eq!(r("1e3"), "Float(1000.0)");
        assert_eq!(r(".inf"), "Float(inf)");
        assert_eq!(r("1.2.3"), "Str(\"1.2.3\")");
        assert_eq!(r("."), "Str(\".\")");
        assert_eq!(r("e5"), "Str(\"e5\")");
        assert_eq!(r("200m"), "Str(\"200m\")");
    }

    #[test]
    fn quoted_scalars_are_text_unless_tagged() {
        let quoted = Scalar {
            text: "12".into(),
            plain: false,
            tag: None,
        };
        assert_eq!(quoted.resolve(), Resolved::Str("12"));
        let tagged = Scalar {
            tag: Some("int".into()),
            ..quoted
        };
        assert_eq!(tagged.resolve(), Resolved::Int(12));
        let forced = Scalar {
            text: "12".into(),
            plain: true,
            tag: Some("str".into()),
        };
        assert_eq!(forced.resolve(), Resolved::Str("12"));
    }

    #[test]
    fn typed_reads_explain_wrong_types() {
        assert_eq!(plain("4").whole("f").unwrap(), 4);
        let err = plain("one").whole("f").unwrap_err();
        assert_eq!(err.message, "expected a whole number, got \"one\"");
        let err = plain("-1").whole("f").unwrap_err();
        assert_eq!(err.message, "must not be negative, got -1");
        let err = plain("2.5").whole("f").unwrap_err();
        assert_eq!(err.message, "expected a whole number, got \"2.5\"");
        assert_eq!(plain("0.25").number("f").unwrap(), 0.25);
        assert_eq!(plain("3").number("f").unwrap(), 3.0);
        let err = plain(".nan").number("f").unwrap_err();
        assert_eq!(err.message, "must be a finite number, got \".nan\"");
        let err = plain("~").text("f").unwrap_err();
        assert_eq!(err.message, "expected text, got nothing");
    }
}
