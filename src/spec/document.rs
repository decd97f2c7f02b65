//! The whole file: a non-empty list of APIs with unique names and endpoints.

use std::collections::HashMap;

use super::api::{api, label, Located};
use super::node::{Node, Pos, Value};
use super::problem::{quote, Problem};
use super::types::ApiSpec;

/// The file's APIs; every problem found, in file order (each API's sections are all checked,
/// whatever the other APIs hold).
pub(crate) fn apis(root: Option<&Node>) -> Result<Vec<ApiSpec>, Vec<Problem>> {
    list(root).map_err(|p| vec![p]).and_then(each_api)
}

/// The items of the list of APIs.
fn list(root: Option<&Node>) -> Result<&[Node], Problem> {
    let start = Pos { line: 1, column: 1 };
    let root = match root {
        Some(node) if !node.is_null() => node,
        Some(node) => return Err(no_apis(node.pos)),
        None => return Err(no_apis(start)),
    };
    let items = match &root.value {
        Value::Seq(items) => items,
        Value::Map(_) => return Err(single_mapping(root)),
        Value::Scalar(_) => {
            return Err(Problem::new(
                root.pos,
                "",
                format!(
                    "expected a list of apis (lines starting with \"- name: …\"), got {}",
                    root.describe()
                ),
            ))
        }
    };
    if items.is_empty() {
        return Err(no_apis(root.pos));
    }
    Ok(items)
}

/// Each item as an API, names and endpoints unique.
fn each_api(items: &[Node]) -> Result<Vec<ApiSpec>, Vec<Problem>> {
    let mut specs = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    // name → line; endpoint → (line, api name)
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut endpoints: HashMap<String, (usize, String)> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        if !matches!(item.value, Value::Map(_)) {
            problems.push(Problem::new(
                item.pos,
                "",
                format!(
                    "api {} of the list: expected a mapping with name, kind and predictor, got {}",
                    index + 1,
                    item.describe()
                ),
            ));
            continue;
        }
        let name = label(item);
        let with_api = |mut problem: Problem| {
            if problem.field != "name" {
                problem.api.clone_from(&name);
            }
            problem
        };
        let Located {
            spec,
            name_pos,
            endpoint_pos,
        } = match api(item) {
            Ok(located) => located,
            Err(found) => {
                problems.extend(found.into_iter().map(with_api));
                continue;
            }
        };

        if let Some(first) = names.insert(spec.name.clone(), name_pos.line) {
            // A name merged in from an anchor sits where the anchor is: point at this API.
            let at = if name_pos.line == first {
                item.pos
            } else {
                name_pos
            };
            problems.push(Problem::new(
                at,
                "name",
                format!(
                    "{} is already the name of the api on line {first}; api names must be unique",
                    quote(&spec.name)
                ),
            ));
            continue;
        }
        let endpoint = &spec.networking.endpoint;
        let line = endpoint_pos.unwrap_or(name_pos).line;
        if let Some((first, other)) = endpoints.get(endpoint) {
            let what = if endpoint_pos.is_some() {
                quote(endpoint)
            } else {
                format!("{} (the default, from the name)", quote(endpoint))
            };
            problems.push(with_api(Problem::new(
                endpoint_pos.unwrap_or(name_pos),
                "networking.endpoint",
                format!(
                    "{what} is already the endpoint of api {} on line {first}; set a different \
                     networking.endpoint",
                    quote(other)
                ),
            )));
            continue;
        }
        endpoints.insert(endpoint.clone(), (line, spec.name.clone()));
        specs.push(spec);
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(problems)
    }
}

fn no_apis(pos: Pos) -> Problem {
    Problem::new(
        pos,
        "",
        "no apis are defined; add one, e.g. \"- name: my-api\" followed by its kind and predictor",
    )
}

fn single_mapping(root: &Node) -> Problem {
    let first_key = match &root.value {
        Value::Map(entries) => entries
            .first()
            .and_then(|e| e.key.scalar())
            .map(|k| k.text.clone()),
        _ => None,
    };
    let hint = match first_key {
        Some(key) => format!(
            "put \"- \" before {} and indent the lines after it by two spaces",
            quote(&format!("{key}:"))
        ),
        None => {
            "put \"- \" before the first key and indent the lines after it by two spaces".into()
        }
    };
    Problem::new(
        root.pos,
        "",
        format!("the file must be a list of apis, but it is a single mapping; {hint}"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::load::load;
    use super::*;

    /// The first problem.
    fn parse(yaml: &str) -> Result<Vec<ApiSpec>, Problem> {
        apis(load(yaml).unwrap().as_ref()).map_err(|mut found| found.remove(0))
    }

    const API: &str = "kind: RealtimeAPI\n  predictor: {type: python, path: p.py}";

    #[test]
    fn empty_files_and_lists_define_no_apis() {
        for yaml in ["", "# nothing\n", "~", "[]"] {
            let err = parse(yaml).unwrap_err();
            assert!(
                err.message.starts_with("no apis are defined"),
                "{yaml}: {err:?}"
            );
        }
    }

    #[test]
    fn a_single_mapping_is_not_a_list() {
        let err = parse("name: iris\nkind: RealtimeAPI\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 1, column: 1 });
        assert_eq!(
            err.message,
            "the file must be a list of apis, but it is a single mapping; put \"- \" before \
             \"name:\" and indent the lines after it by two spaces"
        );
        let err = parse("hello").unwrap_err();
        assert!(err.message.starts_with("expected a list of apis"));
        let err = parse("- hello").unwrap_err();
        assert_eq!(
            err.message,
            "api 1 of the list: expected a mapping with name, kind and predictor, got \"hello\""
        );
    }

    #[test]
    fn problems_name_the_api() {
        let err = parse(&format!("- name: iris\n  {API}\n  compute: {{cpu: x}}\n")).unwrap_err();
        assert_eq!(err.api.as_deref(), Some("iris"));
        assert_eq!(err.field, "compute.cpu");
        let err = parse(&format!("- name: Iris\n  {API}\n")).unwrap_err();
        assert_eq!(err.api, None);
        assert_eq!(err.field, "name");
    }

    #[test]
    fn duplicate_names_point_at_the_second() {
        let err = parse(&format!("- name: a\n  {API}\n- name: a\n  {API}\n")).unwrap_err();
        assert_eq!(err.pos, Pos { line: 4, column: 9 });
        assert_eq!(err.field, "name");
        assert_eq!(
            err.message,
            "\"a\" is already the name of the api on line 1; api names must be unique"
        );
    }

    #[test]
    fn duplicate_endpoints_point_at_the_second() {
        let yaml =
            format!("- name: a\n  {API}\n  networking: {{endpoint: /b}}\n- name: b\n  {API}\n");
        let err = parse(&yaml).unwrap_err();
        assert_eq!(err.pos, Pos { line: 5, column: 9 });
        assert_eq!(err.api.as_deref(), Some("b"));
        assert_eq!(
            err.message,
            "\"/b\" (the default, from the name) is already the endpoint of api \"a\" on line 4; \
             set a different networking.endpoint"
        );
        let yaml =
            format!("- name: a\n  {API}\n- name: b\n  {API}\n  networking:\n    endpoint: a/\n");
        let err = parse(&yaml).unwrap_err();
        assert_eq!(
            err.pos,
            Pos {
                line: 8,
                column: 15
            }
        );
        assert_eq!(
            err.message,
            "\"/a\" is already the endpoint of api \"a\" on line 1; set a different \
             networking.endpoint"
        );
    }
}
