//! Where a field of an API is written in the file, for checks made after parsing (the server's:
//! a splitter's api that is not deployed, a predictor file that is not in the project), so
//! their messages carry `file:line:column` like the parser's.

use super::api::{label, raw_value};
use super::load;
use super::node::{Node, Value};

/// The line and column of `field` (dotted, with `[i]` list indices, e.g. `apis[1].name`) in the
/// API named `api` of config `text`; `None` when the text or the field cannot be found.
pub fn locate(text: &str, api: &str, field: &str) -> Option<(usize, usize)> {
    let root = load::load(text).ok()??;
    let Value::Seq(items) = &root.value else {
        return None;
    };
    let mut node = items
        .iter()
        .find(|item| label(item).as_deref() == Some(api))?;
    for step in field.split('.') {
        let (key, indices) = match step.split_once('[') {
            Some((key, rest)) => (key, Some(rest)),
            None => (step, None),
        };
        node = raw_value(node, key)?;
        for index in indices.into_iter().flat_map(|r| r.split('[')) {
            let i: usize = index.trim_end_matches(']').parse().ok()?;
            node = item(node, i)?;
        }
    }
    Some((node.pos.line, node.pos.column))
}

fn item(node: &Node, i: usize) -> Option<&Node> {
    match &node.value {
        Value::Seq(items) => items.get(i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn finds_fields_with_list_indices() {
        let text = "- name: a\n  kind: RealtimeAPI\n- name: s\n  kind: TrafficSplitter\n  apis:\n    - name: a\n      weight: 50\n    - name: gone\n      weight: 50\n";
        assert_eq!(locate(text, "s", "apis[1].name"), Some((8, 13)));
        assert_eq!(locate(text, "s", "kind"), Some((4, 9)));
        assert_eq!(locate(text, "s", "apis[2].name"), None);
        assert_eq!(locate(text, "nobody", "kind"), None);
        assert_eq!(locate("[: bad", "s", "kind"), None);
    }
}
