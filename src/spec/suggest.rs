//! "did you mean …?": the valid word nearest to a misspelt one.

/// How similar (Jaro-Winkler, 0..=1) a word must be to a candidate to be suggested.
const THRESHOLD: f64 = 0.8;

/// The candidate nearest to `word`, if any is near enough.
///
/// Case, `_` and `-` are ignored first (`minReplicas` → `min_replicas`, `realtimeapi` →
/// `RealtimeAPI`); otherwise the candidate with the highest Jaro-Winkler similarity wins.
pub(crate) fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let folded = fold(word);
    if let Some(exact) = candidates.iter().find(|c| fold(c) == folded) {
        return Some(exact);
    }
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&folded, &fold(c)), *c))
        .filter(|(score, _)| *score >= THRESHOLD)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn fold(word: &str) -> String {
    word.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// `"a", "b" and "c"`.
pub(crate) fn all_of(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &[
        "type",
        "path",
        "command",
        "config",
        "python_path",
        "env",
        "processes_per_replica",
        "threads_per_process",
    ];

    #[test]
    fn suggests_near_misses() {
        assert_eq!(nearest("typ", KEYS), Some("type"));
        assert_eq!(nearest("pth", KEYS), Some("path"));
        assert_eq!(
            nearest("proceses_per_replica", KEYS),
            Some("processes_per_replica")
        );
        assert_eq!(nearest("threads", KEYS), Some("threads_per_process"));
        assert_eq!(nearest("pythonPath", KEYS), Some("python_path"));
        assert_eq!(nearest("cnfig", KEYS), Some("config"));
        assert_eq!(nearest("environment", KEYS), Some("env"));
    }

    #[test]
    fn stays_quiet_when_nothing_is_near() {
        assert_eq!(nearest("zebra", KEYS), None);
        assert_eq!(nearest("", KEYS), None);
        assert_eq!(nearest("x", &[]), None);
    }

    #[test]
    fn matches_case_insensitively() {
        let kinds = &["RealtimeAPI", "BatchAPI"];
        assert_eq!(nearest("realtimeapi", kinds), Some("RealtimeAPI"));
        assert_eq!(nearest("Realtime_API", kinds), Some("RealtimeAPI"));
        assert_eq!(nearest("BatchApi", kinds), Some("BatchAPI"));
    }

    #[test]
    fn lists_alternatives() {
        assert_eq!(all_of(&["a"]), "\"a\"");
        assert_eq!(all_of(&["a", "b"]), "\"a\" and \"b\"");
        assert_eq!(all_of(&["a", "b", "c"]), "\"a\", \"b\" and \"c\"");
    }
}
