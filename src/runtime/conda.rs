//! `conda-packages.txt`, as cortex 0.2x projects wrote it: one conda package spec per line
//! (`python=3.8`, `conda-forge::rdkit`, `numpy=1.19`), `#` comments. The `python` line is how
//! cortex users chose their interpreter.

/// What a `conda-packages.txt` asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CondaPackages {
    /// `3.8` of `python=3.8` (`python==3.8.5` and `python>=3.8` are read as `3.8` too).
    pub python: Option<String>,
    /// Every other package spec, as written.
    pub others: Vec<String>,
}

/// Reads the text of a `conda-packages.txt`.
pub fn parse(text: &str) -> CondaPackages {
    let mut out = CondaPackages::default();
    for line in text.lines() {
        let spec = line.split('#').next().unwrap_or_default().trim();
        if spec.is_empty() {
            continue;
        }
        let name_end = spec
            .find(|c: char| "=<>! ".contains(c))
            .unwrap_or(spec.len());
        let name = spec[..name_end].rsplit("::").next().unwrap_or_default();
        if name != "python" {
            out.others.push(spec.to_string());
            continue;
        }
        let version = spec[name_end..].trim_start_matches(|c: char| "=<>! ".contains(c));
        let mut parts = version.split('.').filter(|p| !p.is_empty());
        if let (Some(major), Some(minor)) = (parts.next(), parts.next()) {
            let minor: String = minor.chars().take_while(char::is_ascii_digit).collect();
            if major.chars().all(|c| c.is_ascii_digit()) && !minor.is_empty() {
                out.python = Some(format!("{major}.{minor}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{parse, CondaPackages};

    #[test]
    fn the_python_line_chooses_the_interpreter_and_the_rest_are_packages() {
        assert_eq!(
            parse("# env\npython=3.8\nconda-forge::rdkit\nnumpy=1.19  # pinned\n\n"),
            CondaPackages {
                python: Some("3.8".into()),
                others: vec!["conda-forge::rdkit".into(), "numpy=1.19".into()],
            }
        );
        assert_eq!(parse("python==3.7.9").python.as_deref(), Some("3.7"));
        assert_eq!(parse("python>=3.10").python.as_deref(), Some("3.10"));
        assert_eq!(parse("python").python, None);
        assert_eq!(parse("pythonnet=2.5").others, vec!["pythonnet=2.5"]);
    }
}
