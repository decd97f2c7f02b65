//! `.env` files, read as cortex 0.2x sourced them after the API's `env`: `KEY=VALUE` lines,
//! `export ` allowed, `#` comments ignored; `$VAR` and `${VAR}` expand to what the API's `env`
//! and the lines above set (empty otherwise), except inside single quotes; `\$` is a `$`.

/// Parses `.env` text over `before` (the API's `env`); lines that are not assignments are
/// skipped. The values are expanded.
pub fn parse(text: &str, before: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let Some((key, raw)) = assignment(line) else {
            continue;
        };
        let value = match unquote(raw) {
            Quoted::Single(v) => v.to_string(),
            Quoted::Double(v) | Quoted::Bare(v) => {
                let lookup = |name: &str| {
                    out.iter()
                        .rev()
                        .chain(before.iter().rev())
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                };
                expand(v, lookup)
            }
        };
        out.push((key.to_string(), value));
    }
    out
}

/// `KEY=value` of one line (after an optional `export `), when it is an assignment.
fn assignment(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (key, value) = line.split_once('=')?;
    let key = key.trim();
    let valid = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    valid.then_some((key, value.trim()))
}

enum Quoted<'a> {
    Single(&'a str),
    Double(&'a str),
    Bare(&'a str),
}

fn unquote(value: &str) -> Quoted<'_> {
    if let Some(v) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return Quoted::Single(v);
    }
    if let Some(v) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        return Quoted::Double(v);
    }
    Quoted::Bare(value)
}

/// `$NAME` and `${NAME}` in `value` replaced by `lookup(NAME)` (empty when unset); `\$` is `$`.
fn expand(value: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'$') => {
                out.push('$');
                chars.next();
            }
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                out.push_str(&lookup(&name).unwrap_or_default());
            }
            '$' if chars
                .peek()
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') =>
            {
                let mut name = String::new();
                while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
                    name.push(c);
                }
                out.push_str(&lookup(&name).unwrap_or_default());
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assignments_and_skips_the_rest() {
        let env = parse(
            "# c\nA=1\nexport B=\"two words\"\nC='x'\nnot a line\n9X=1\n\nD = 4\n",
            &[],
        );
        assert_eq!(
            env,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x".into()),
                ("D".into(), "4".into()),
            ]
        );
    }

    #[test]
    fn variables_expand_from_the_apis_env_and_the_lines_above() {
        let before = [("HOST".to_string(), "db".to_string())];
        let env = parse(
            "PORT=5432\nURL=postgres://${HOST}:$PORT/x\nLIT='$HOST'\nESC=\\$HOST\nNONE=a${MISSING}b\nHOST=other\nQ=\"$HOST\"\n",
            &before,
        );
        let get = |k: &str| env.iter().rev().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("URL"), "postgres://db:5432/x");
        assert_eq!(get("LIT"), "$HOST");
        assert_eq!(get("ESC"), "$HOST");
        assert_eq!(get("NONE"), "ab");
        assert_eq!(get("Q"), "other");
    }
}
