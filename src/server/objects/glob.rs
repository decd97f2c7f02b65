//! `includes` and `excludes`: which listed files a job keeps (pure). A file is kept when it
//! matches one of `includes` (every file, when there are none) and none of `excludes`. A
//! glob matches the whole `s3://bucket/key`, with upstream cortex's rules (its glob library
//! with `/` as the separator): `*` is any run of characters without `/`, `**` any run at all
//! (so `**.jpg` is every JPEG under the paths listed), `?` one character other than `/`,
//! `[abc]`, `[a-z]` and `[!abc]` one character of (or not of) a set, `{jpg,png}` one of the
//! alternatives, and `\` takes the next character as it is. Globs are translated to regular
//! expressions, which match in time linear in the path.

use regex::{Regex, RegexSet, RegexSetBuilder};

/// The most patterns one list may hold.
pub const MAX_GLOBS: usize = 100;
/// The longest pattern, in bytes.
const MAX_GLOB_BYTES: usize = 1024;

/// Compiled `includes` and `excludes`.
#[derive(Debug, Clone)]
pub struct Filter {
    includes: Option<RegexSet>,
    excludes: Option<RegexSet>,
}

/// A glob that cannot be used: its field (`delimited_files.includes[1]`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadGlob {
    pub field: String,
    pub why: String,
}

impl Filter {
    /// `includes` and `excludes` of `parent` (`delimited_files` or `file_path_lister`).
    pub fn new(parent: &str, includes: &[String], excludes: &[String]) -> Result<Filter, BadGlob> {
        Ok(Filter {
            includes: set(parent, "includes", includes)?,
            excludes: set(parent, "excludes", excludes)?,
        })
    }

    /// Whether the job keeps `path` (`s3://bucket/key`).
    pub fn keeps(&self, path: &str) -> bool {
        self.includes.as_ref().is_none_or(|s| s.is_match(path))
            && !self.excludes.as_ref().is_some_and(|s| s.is_match(path))
    }

    /// Whether it filters anything out at all.
    pub fn filters(&self) -> bool {
        self.includes.is_some() || self.excludes.is_some()
    }
}

fn set(parent: &str, list: &str, globs: &[String]) -> Result<Option<RegexSet>, BadGlob> {
    if globs.is_empty() {
        return Ok(None);
    }
    let bad = |i: usize, why: String| BadGlob {
        field: format!("{parent}.{list}[{i}]"),
        why,
    };
    if globs.len() > MAX_GLOBS {
        return Err(BadGlob {
            field: format!("{parent}.{list}"),
            why: format!("has {} patterns; give at most {MAX_GLOBS}", globs.len()),
        });
    }
    let mut patterns = Vec::with_capacity(globs.len());
    for (i, glob) in globs.iter().enumerate() {
        if glob.len() > MAX_GLOB_BYTES {
            return Err(bad(i, format!("is longer than {MAX_GLOB_BYTES} bytes")));
        }
        let pattern = to_regex(glob).map_err(|why| bad(i, format!("{glob:?}: {why}")))?;
        // Each is compiled alone first, to name the one that fails.
        Regex::new(&pattern).map_err(|e| bad(i, format!("{glob:?}: {e}")))?;
        patterns.push(pattern);
    }
    RegexSetBuilder::new(&patterns)
        .size_limit(16 << 20)
        .build()
        .map(Some)
        .map_err(|e| BadGlob {
            field: format!("{parent}.{list}"),
            why: format!("the patterns are too complex together: {e}"),
        })
}

/// The regular expression of a glob (anchored at both ends).
fn to_regex(glob: &str) -> Result<String, String> {
    let mut out = String::from("^");
    let mut chars = glob.chars().peekable();
    let mut depth = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                out.push_str(".*");
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => out.push_str(&class(&mut chars)?),
            '{' => {
                depth += 1;
                out.push_str("(?:");
            }
            ',' if depth > 0 => out.push('|'),
            '}' if depth > 0 => {
                depth -= 1;
                out.push(')');
            }
            '\\' => {
                let next = chars
                    .next()
                    .ok_or("ends with \\, which escapes nothing; write \\\\ for a backslash")?;
                out.push_str(&regex::escape(&next.to_string()));
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
    }
    if depth > 0 {
        return Err("a { is not closed; write {a,b}".to_string());
    }
    out.push('$');
    Ok(out)
}

/// `[...]` after its `[`: a set of characters, ranges, or `!`/`^` first for the others.
fn class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<String, String> {
    let mut out = String::from("[");
    if matches!(chars.peek(), Some('!' | '^')) {
        chars.next();
        out.push('^');
    }
    let mut empty = true;
    loop {
        match chars.next() {
            None => return Err("a [ is not closed; write [abc] or [a-z]".to_string()),
            Some(']') if !empty => break,
            Some(c) => {
                empty = false;
                out.push_str(&regex::escape(&c.to_string()));
                if chars.peek() == Some(&'-') {
                    chars.next();
                    match chars.next() {
                        Some(']') => {
                            out.push_str("\\-");
                            break;
                        }
                        Some(end) if end >= c => {
                            out.push('-');
                            out.push_str(&regex::escape(&end.to_string()));
                        }
                        Some(end) => return Err(format!("the range {c}-{end} runs backwards")),
                        None => return Err("a [ is not closed; write [abc] or [a-z]".to_string()),
                    }
                }
            }
        }
    }
    out.push(']');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeps(includes: &[&str], excludes: &[&str], path: &str) -> bool {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Filter::new("delimited_files", &own(includes), &own(excludes))
            .unwrap()
            .keeps(path)
    }

    /// The examples of upstream cortex's "Filtering files".
    #[test]
    fn upstreams_examples_select_what_its_docs_say() {
        let files = [
            "s3://bucket/images/img_1.png",
            "s3://bucket/images/img_2.jpg",
            "s3://bucket/images/img_3.jpg",
            "s3://bucket/images/img_4.gif",
        ];
        let kept = |inc: &[&str], exc: &[&str]| -> Vec<&str> {
            files
                .iter()
                .copied()
                .filter(|f| keeps(inc, exc, f))
                .collect()
        };
        assert_eq!(kept(&[], &[]), files);
        assert_eq!(kept(&["**.jpg"], &[]), [files[1], files[2]]);
        assert_eq!(kept(&["**.jpg"], &["**_3.jpg"]), [files[1]]);
        assert_eq!(kept(&[], &["**.gif"]), [files[0], files[1], files[2]]);
    }

    #[test]
    fn stars_questions_sets_and_alternatives() {
        let p = "s3://b/dir/sub/a1.json";
        assert!(keeps(&["s3://b/dir/*/*.json"], &[], p));
        assert!(!keeps(&["s3://b/*.json"], &[], p), "* stops at /");
        assert!(keeps(&["s3://b/**.json"], &[], p));
        assert!(keeps(&["s3://b/dir/sub/a?.json"], &[], p));
        assert!(!keeps(&["s3://b/dir?sub/a1.json"], &[], p), "? is not /");
        assert!(keeps(&["**/a[0-9].json"], &[], p));
        assert!(!keeps(&["**/a[!0-9].json"], &[], p));
        assert!(keeps(&["**.{csv,json}"], &[], p));
        assert!(!keeps(&["**.{csv,txt}"], &[], p));
        assert!(keeps(&["s3://b/dir/sub/a1.json"], &[], p), "a plain path");
        assert!(!keeps(&["s3://b/dir/sub/a1"], &[], p), "the whole path");
        assert!(
            keeps(&["**(1).json"], &[], "s3://b/x(1).json"),
            "( is literal"
        );
        assert!(keeps(&["**\\*.json"], &[], "s3://b/x*.json"));
        assert!(
            keeps(&["**a,b.json"], &[], "s3://b/a,b.json"),
            ", outside braces is literal"
        );
        assert!(keeps(&["**[a-]"], &[], "s3://b/x-"));
    }

    #[test]
    fn a_bad_glob_names_its_field() {
        for (glob, why) in [
            ("**[abc", "not closed"),
            ("**{a,b", "not closed"),
            ("**\\", "escapes nothing"),
            ("**[z-a]", "backwards"),
        ] {
            let e = Filter::new("file_path_lister", &[], &["ok".into(), glob.into()]).unwrap_err();
            assert_eq!(e.field, "file_path_lister.excludes[1]", "{glob}");
            assert!(e.why.contains(why), "{glob}: {}", e.why);
        }
        let many: Vec<String> = (0..=MAX_GLOBS).map(|i| i.to_string()).collect();
        let e = Filter::new("delimited_files", &many, &[]).unwrap_err();
        assert_eq!(e.field, "delimited_files.includes");
    }
}
