//! YAML text → [`Node`] tree, from yaml-rust2's event parser (which reports every position).
//!
//! Anchors and aliases are expanded; merge keys (`<<: *defaults`) are applied, explicit keys
//! winning. Limits keep hostile input harmless: nesting deeper than [`MAX_DEPTH`] and aliases
//! expanding to more than [`MAX_ALIAS_NODES`] nodes are errors, not stack overflows or OOMs.

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

use super::node::{Entry, Node, Pos, Scalar, Value};
use super::problem::Problem;

/// Deeper YAML is refused; it also keeps stored specs readable by serde_json (limit 128).
pub(crate) const MAX_DEPTH: usize = 100;
/// How many nodes aliases may add in total (a "billion laughs" document stops here).
pub(crate) const MAX_ALIAS_NODES: usize = 100_000;
/// How much text aliases may add in total (one long anchored string used many times).
pub(crate) const MAX_ALIAS_BYTES: usize = 4 << 20;

/// An anchored node, with what an alias to it adds.
#[derive(Debug)]
struct Anchored {
    node: Node,
    size: usize,
    depth: usize,
    bytes: usize,
}

/// Parses one YAML document; `None` when the text holds no document (empty or only comments).
pub(crate) fn load(text: &str) -> Result<Option<Node>, Problem> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::default();
    loop {
        let (event, mark) = parser.next_token().map_err(|e| syntax_error(e, text))?;
        if builder.on_event(event, pos(mark))? {
            return Ok(builder.root);
        }
    }
}

fn pos(mark: Marker) -> Pos {
    // yaml-rust2 lines are 1-based, columns 0-based.
    Pos {
        line: mark.line().max(1),
        column: mark.col() + 1,
    }
}

/// Where the first tab at or after `from` (a char index) is, if any: the parser reports tab
/// errors at the token before the tab, often on the line above.
fn tab_position(text: &str, from: usize) -> Option<Pos> {
    let (mut line, mut column) = (1, 1);
    for (i, c) in text.chars().enumerate() {
        if c == '\t' && i >= from {
            return Some(Pos { line, column });
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    None
}

fn syntax_error(err: ScanError, text: &str) -> Problem {
    let info = err.info();
    let mut chars = info.chars();
    let info = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::from("unreadable"),
    };
    let hint = if info.contains("tab") {
        "; indent with spaces, not tabs"
    } else if info.contains("did not find expected key")
        || info.contains("mapping values are not allowed")
    {
        "; check the indentation of this line and the lines above it"
    } else {
        ""
    };
    let at = if info.contains("tab") {
        tab_position(text, err.marker().index()).unwrap_or_else(|| pos(*err.marker()))
    } else {
        pos(*err.marker())
    };
    Problem::new(at, "", format!("invalid yaml: {info}{hint}"))
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Finished anchored nodes with their sizes in nodes.
    anchors: HashMap<usize, Anchored>,
    alias_nodes: usize,
    alias_bytes: usize,
    documents: usize,
    root: Option<Node>,
}

impl Builder {
    /// Takes one event; `Ok(true)` once the stream has ended.
    fn on_event(&mut self, event: Event, pos: Pos) -> Result<bool, Problem> {
        match event {
            Event::StreamEnd => return Ok(true),
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Problem::new(
                        pos,
                        "",
                        "found a second yaml document (after \"---\"); \
                         put all apis in one list in a single document",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let node = Node {
                    pos,
                    value: Value::Scalar(Scalar {
                        text,
                        plain: style == TScalarStyle::Plain,
                        tag: core_tag(tag),
                    }),
                };
                self.finish(node, anchor)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.push(
                    Frame::Seq {
                        pos,
                        anchor,
                        items: Vec::new(),
                    },
                    pos,
                )?;
            }
            Event::MappingStart(anchor, _) => {
                self.push(
                    Frame::Map {
                        pos,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                    },
                    pos,
                )?;
            }
            Event::SequenceEnd | Event::MappingEnd => self.end_collection()?,
            Event::Alias(id) => self.alias(id, pos)?,
        }
        Ok(false)
    }

    /// The end of a sequence or mapping: the node it makes, finished.
    fn end_collection(&mut self) -> Result<(), Problem> {
        let (node, anchor) = match self.stack.pop() {
            Some(Frame::Seq { pos, anchor, items }) => (
                Node {
                    pos,
                    value: Value::Seq(items),
                },
                anchor,
            ),
            Some(Frame::Map {
                pos,
                anchor,
                entries,
                ..
            }) => {
                // A block mapping's start event is marked at its first ':'; the mapping
                // starts at its first key.
                let pos = entries.first().map_or(pos, |e| pos.min(e.key.pos));
                (
                    Node {
                        pos,
                        value: Value::Map(merge(entries)?),
                    },
                    anchor,
                )
            }
            None => return Ok(()),
        };
        self.finish(node, anchor)
    }

    /// An alias: a copy of the node its anchor named, within the limits on what aliases
    /// may expand to.
    fn alias(&mut self, id: usize, pos: Pos) -> Result<(), Problem> {
        let Some(Anchored {
            node,
            size,
            depth,
            bytes,
        }) = self.anchors.get(&id)
        else {
            return Err(Problem::new(
                pos,
                "",
                "this alias refers to a node that contains it; it cannot be expanded",
            ));
        };
        // The copy lands at the current depth: count its own depth too, or chained
        // aliases would nest far deeper than the limit (and overflow the stack).
        if self.stack.len() + depth > MAX_DEPTH {
            return Err(Problem::new(
                pos,
                "",
                format!("the yaml nests more than {MAX_DEPTH} levels deep once its aliases are expanded"),
            ));
        }
        self.alias_bytes = self.alias_bytes.saturating_add(*bytes);
        if self.alias_bytes > MAX_ALIAS_BYTES {
            return Err(Problem::new(
                pos,
                "",
                format!(
                    "aliases expand to more than {} MiB of text; the file is too large to read",
                    MAX_ALIAS_BYTES >> 20
                ),
            ));
        }
        self.alias_nodes = self.alias_nodes.saturating_add(*size);
        if self.alias_nodes > MAX_ALIAS_NODES {
            return Err(Problem::new(
                pos,
                "",
                format!(
                    "aliases expand to more than {MAX_ALIAS_NODES} values; \
                     the file is too large to read"
                ),
            ));
        }
        let mut node = node.clone();
        node.pos = pos;
        self.finish(node, 0)
    }

    fn push(&mut self, frame: Frame, pos: Pos) -> Result<(), Problem> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Problem::new(
                pos,
                "",
                format!("the yaml nests more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.stack.push(frame);
        Ok(())
    }

    /// Hands a complete node to its parent (or makes it the document root).
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), Problem> {
        if anchor != 0 {
            let anchored = Anchored {
                size: size(&node),
                depth: depth(&node),
                bytes: bytes(&node),
                node: node.clone(),
            };
            self.anchors.insert(anchor, anchored);
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push(Entry {
                    key: k,
                    value: node,
                }),
            },
        }
        Ok(())
    }
}

/// The suffix of a YAML core tag (`!!str` → `str`); other tags are ignored.
fn core_tag(tag: Option<Tag>) -> Option<String> {
    tag.filter(|t| t.handle == "tag:yaml.org,2002:")
        .map(|t| t.suffix)
}

/// How many levels of collections a node holds (a scalar: 0). Bounded by [`MAX_DEPTH`], so
/// the recursion is too.
fn depth(node: &Node) -> usize {
    match &node.value {
        Value::Scalar(_) => 0,
        Value::Seq(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|e| depth(&e.key).max(depth(&e.value)))
                .max()
                .unwrap_or(0)
        }
    }
}

/// The text a node holds, in bytes.
fn bytes(node: &Node) -> usize {
    match &node.value {
        Value::Scalar(s) => s.text.len(),
        Value::Seq(items) => items.iter().map(bytes).sum(),
        Value::Map(entries) => entries
            .iter()
            .map(|e| bytes(&e.key) + bytes(&e.value))
            .sum(),
    }
}

fn size(node: &Node) -> usize {
    1 + match &node.value {
        Value::Scalar(_) => 0,
        Value::Seq(items) => items.iter().map(size).sum(),
        Value::Map(entries) => entries.iter().map(|e| size(&e.key) + size(&e.value)).sum(),
    }
}

fn is_merge_key(key: &Node) -> bool {
    key.scalar()
        .is_some_and(|s| s.plain && s.tag.is_none() && s.text == "<<")
}

/// Applies `<<` merge keys: the merged mappings' entries are added after the explicit ones,
/// unless the key is already set (earlier mappings in a `<<: [*a, *b]` list win).
fn merge(entries: Vec<Entry>) -> Result<Vec<Entry>, Problem> {
    if !entries.iter().any(|e| is_merge_key(&e.key)) {
        return Ok(entries);
    }
    let mut explicit = Vec::new();
    let mut sources = Vec::new();
    for entry in entries {
        if !is_merge_key(&entry.key) {
            explicit.push(entry);
            continue;
        }
        match entry.value.value {
            Value::Map(merged) => sources.push(merged),
            Value::Seq(items) => {
                for item in items {
                    match item.value {
                        Value::Map(merged) => sources.push(merged),
                        _ => return Err(bad_merge(&item)),
                    }
                }
            }
            _ => return Err(bad_merge(&entry.value)),
        }
    }
    let text = |e: &Entry| e.key.scalar().map(|s| s.text.clone());
    let mut seen: HashSet<String> = explicit.iter().filter_map(text).collect();
    for source in sources {
        for entry in source {
            // Keys that are not text cannot clash with the schema's; keep them.
            if text(&entry).is_none_or(|key| seen.insert(key)) {
                explicit.push(entry);
            }
        }
    }
    Ok(explicit)
}

fn bad_merge(node: &Node) -> Problem {
    Problem::new(
        node.pos,
        "",
        format!(
            "a merge key (<<) takes an alias of a mapping, e.g. \"<<: *defaults\", got {}",
            node.describe()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_keys(node: &Node) -> Vec<String> {
        match &node.value {
            Value::Map(entries) => entries
                .iter()
                .map(|e| e.key.scalar().unwrap().text.clone())
                .collect(),
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn positions_are_one_based() {
        let root = load("- name: iris\n  kind: RealtimeAPI\n")
            .unwrap()
            .unwrap();
        assert_eq!(root.pos, Pos { line: 1, column: 1 });
        let Value::Seq(items) = &root.value else {
            panic!()
        };
        assert_eq!(items[0].pos, Pos { line: 1, column: 3 });
        let Value::Map(entries) = &items[0].value else {
            panic!()
        };
        assert_eq!(entries[0].value.pos, Pos { line: 1, column: 9 });
        assert_eq!(entries[1].key.pos, Pos { line: 2, column: 3 });
    }

    #[test]
    fn empty_text_has_no_document() {
        assert_eq!(load("").unwrap(), None);
        assert_eq!(load("# just a comment\n").unwrap(), None);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = load("- name: a\n  kind: [x\n").unwrap_err();
        assert!(err.message.starts_with("invalid yaml: "), "{err:?}");
        assert!(err.pos.line >= 2, "{err:?}");
    }

    #[test]
    fn second_document_is_refused() {
        let err = load("- a\n---\n- b\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
        assert!(err.message.contains("second yaml document"));
    }

    #[test]
    fn aliases_and_merge_keys_expand() {
        let text = "- &base {a: 1, b: 2}\n- <<: *base\n  b: 3\n  c: *base\n";
        let root = load(text).unwrap().unwrap();
        let Value::Seq(items) = &root.value else {
            panic!()
        };
        assert_eq!(map_keys(&items[1]), ["b", "c", "a"]);
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = load(&text).unwrap_err();
        assert!(err.message.contains("aliases expand"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(10_000);
        assert!(load(&text).is_err());
        let text = format!("{}{}", "[".repeat(150), "]".repeat(150));
        let err = load(&text).unwrap_err();
        assert!(err.message.contains("levels deep"), "{err:?}");
    }
}
