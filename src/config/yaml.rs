//! A YAML document as a tree of nodes that remember where they were written.
//!
//! `serde` YAML deserializers stop at the first problem and lose positions once
//! a value is built. `tidewater check` must report *every* problem with its line
//! and column, so pipeline files are first read into this tree: every node keeps
//! the [`Mark`] of its first character, every mapping key keeps its own mark, and
//! scalars are resolved with the YAML 1.2 core schema (so `yes` is a string, not
//! a boolean, and a quoted `"8"` stays a string).
//!
//! Invariants: a mapping never holds the same key twice (a repeated key is a
//! [`YamlError`], because silently keeping the last one is how a typo drops a
//! table), and aliases are expanded so consumers never see them.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::Event;
use yaml_rust2::parser::{MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in a source file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
}

impl Mark {
    fn from_marker(m: &Marker) -> Self {
        Mark {
            line: m.line(),
            // yaml-rust2 reports 0-based columns in practice; show 1-based ones.
            column: m.col() + 1,
        }
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One node of the document.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
}

/// One entry of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_mark: Mark,
    pub value: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// `plain` is true for an unquoted scalar: only those may be re-typed after
    /// a `${env:..}` reference is substituted.
    String {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

impl Value {
    /// The name of the kind of value, as used in error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::String { .. } => "string",
            Value::Seq(_) => "list",
            Value::Map(_) => "mapping",
        }
    }
}

impl Node {
    /// The entry for `key` if this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// Converts to JSON for schema validation and deserialization.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String { text, .. } => serde_json::Value::String(text.clone()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A problem that makes the file unreadable as YAML, or a structural problem
/// that YAML parsers usually let pass (repeated keys, several documents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub mark: Mark,
    pub message: String,
}

/// Parses one YAML document. Returns the root node (`None` for an empty file)
/// or every structural problem found.
pub fn parse(text: &str) -> Result<Option<Node>, Vec<YamlError>> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        let mark = Mark::from_marker(e.marker());
        return Err(vec![YamlError {
            mark,
            message: format!("YAML syntax error: {}", e.info()),
        }]);
    }
    if !builder.errors.is_empty() {
        return Err(builder.errors);
    }
    match builder.documents.len() {
        0 => Ok(None),
        1 => Ok(builder.documents.pop()),
        n => Err(vec![YamlError {
            mark: builder.second_document_mark.unwrap_or_default(),
            message: format!("the file holds {n} YAML documents; write one pipeline per file"),
        }]),
    }
}

enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        entries: Vec<Entry>,
        pending_key: Option<(String, Mark)>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    documents: Vec<Node>,
    anchors: HashMap<usize, Node>,
    errors: Vec<YamlError>,
    second_document_mark: Option<Mark>,
    documents_started: usize,
}

impl Builder {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => {
                    // This node is a key.
                    let key = match &node.value {
                        Value::String { text, .. } => Some(text.clone()),
                        Value::Int(i) => Some(i.to_string()),
                        Value::Bool(b) => Some(b.to_string()),
                        Value::Float(f) => Some(f.to_string()),
                        Value::Null => Some(String::new()),
                        Value::Seq(_) | Value::Map(_) => None,
                    };
                    match key {
                        Some(key) => {
                            if let Some(first) = entries.iter().find(|e| e.key == key) {
                                let first_line = first.key_mark.line;
                                self.errors.push(YamlError {
                                    mark: node.mark,
                                    message: format!(
                                        "key `{key}` appears twice in this mapping (first at line {first_line})"
                                    ),
                                });
                            }
                            *pending_key = Some((key, node.mark));
                        }
                        None => {
                            self.errors.push(YamlError {
                                mark: node.mark,
                                message:
                                    "a mapping key must be a plain value, not a list or mapping"
                                        .to_string(),
                            });
                            *pending_key = Some((String::new(), node.mark));
                        }
                    }
                }
                Some((key, key_mark)) => {
                    // A repeated key was reported above; keep only the first.
                    if !entries.iter().any(|e| e.key == key) {
                        entries.push(Entry {
                            key,
                            key_mark,
                            value: node,
                        });
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, marker: Marker) {
        let mark = Mark::from_marker(&marker);
        match ev {
            Event::DocumentStart => {
                self.documents_started += 1;
                if self.documents_started == 2 {
                    self.second_document_mark = Some(mark);
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut node) => {
                    node.mark = mark;
                    self.push_node(node, 0);
                }
                None => {
                    self.errors.push(YamlError {
                        mark,
                        message: "alias refers to an unknown anchor".to_string(),
                    });
                    self.push_node(
                        Node {
                            value: Value::Null,
                            mark,
                        },
                        0,
                    );
                }
            },
            Event::Scalar(text, style, anchor, tag) => {
                let value = match (&tag, style) {
                    (Some(tag), _) => tagged_scalar(tag, text),
                    (None, TScalarStyle::Plain) => resolve_plain(&text),
                    (None, _) => Value::String { text, plain: false },
                };
                self.push_node(Node { value, mark }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                mark,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                mark,
                anchor,
                entries: Vec::new(),
                pending_key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        mark,
                        anchor,
                        items,
                    }) => (
                        Node {
                            value: Value::Seq(items),
                            mark,
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        mark,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            // The parser marks a block mapping at its first
                            // `:`; its first key is where a reader looks.
                            mark: entries.first().map_or(mark, |e| e.key_mark),
                            value: Value::Map(entries),
                        },
                        anchor,
                    ),
                    None => return,
                };
                self.push_node(node, anchor);
            }
        }
    }
}

/// `!!str 123` and friends: honour the standard tags, keep anything else as text.
fn tagged_scalar(tag: &yaml_rust2::parser::Tag, text: String) -> Value {
    let standard = tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!";
    match (standard, tag.suffix.as_str()) {
        (true, "str") => Value::String { text, plain: false },
        (true, "int") | (true, "float") | (true, "bool") | (true, "null") => resolve_plain(&text),
        _ => Value::String { text, plain: false },
    }
}

/// Resolves an unquoted scalar with the YAML 1.2 core schema.
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(i) = parse_int(text) {
        return Value::Int(i);
    }
    if is_float(text)
        && let Ok(f) = text.parse::<f64>()
    {
        return Value::Float(f);
    }
    Value::String {
        text: text.to_string(),
        plain: true,
    }
}

fn parse_int(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok()
}

fn is_float(text: &str) -> bool {
    // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (!int.is_empty() || !frac.is_empty())
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        }
    };
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        parse(text).unwrap().unwrap()
    }

    #[test]
    fn marks_are_one_based_line_and_column() {
        let doc = root("name: shop\nsource:\n  type: postgres\n");
        let source = doc.get("source").unwrap();
        assert_eq!(source.key_mark, Mark { line: 2, column: 1 });
        let ty = source.value.get("type").unwrap();
        assert_eq!(ty.key_mark, Mark { line: 3, column: 3 });
        assert_eq!(ty.value.mark, Mark { line: 3, column: 9 });
    }

    #[test]
    fn core_schema_scalars() {
        assert_eq!(resolve_plain("42"), Value::Int(42));
        assert_eq!(resolve_plain("-7"), Value::Int(-7));
        assert_eq!(resolve_plain("0x1f"), Value::Int(31));
        assert_eq!(resolve_plain("1.5"), Value::Float(1.5));
        assert_eq!(resolve_plain("1e3"), Value::Float(1000.0));
        assert_eq!(resolve_plain("true"), Value::Bool(true));
        assert_eq!(resolve_plain("~"), Value::Null);
        // YAML 1.1 booleans are strings in 1.2.
        assert_eq!(
            resolve_plain("yes"),
            Value::String {
                text: "yes".into(),
                plain: true
            }
        );
        assert_eq!(
            resolve_plain("127.0.0.1:9092"),
            Value::String {
                text: "127.0.0.1:9092".into(),
                plain: true
            }
        );
        assert_eq!(
            resolve_plain("1.2.3"),
            Value::String {
                text: "1.2.3".into(),
                plain: true
            }
        );
    }

    #[test]
    fn quoted_numbers_stay_strings() {
        let doc = root("a: \"8\"\nb: '9'\nc: 10\n");
        assert_eq!(
            doc.get("a").unwrap().value.to_json(),
            serde_json::json!("8")
        );
        assert_eq!(
            doc.get("b").unwrap().value.to_json(),
            serde_json::json!("9")
        );
        assert_eq!(doc.get("c").unwrap().value.to_json(), serde_json::json!(10));
    }

    #[test]
    fn repeated_key_is_an_error_with_both_lines() {
        let errs = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].mark, Mark { line: 3, column: 1 });
        assert!(
            errs[0].message.contains("`a` appears twice"),
            "{}",
            errs[0].message
        );
        assert!(errs[0].message.contains("line 1"), "{}", errs[0].message);
    }

    #[test]
    fn syntax_error_has_a_position() {
        let errs = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.starts_with("YAML syntax error"));
        assert!(errs[0].mark.line >= 1);
    }

    #[test]
    fn several_documents_are_refused() {
        let errs = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(
            errs[0].message.contains("2 YAML documents"),
            "{}",
            errs[0].message
        );
        assert_eq!(errs[0].mark.line, 2);
    }

    #[test]
    fn empty_file_has_no_root() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }

    #[test]
    fn aliases_are_expanded() {
        let doc = root("base: &b {x: 1}\ncopy: *b\n");
        assert_eq!(
            doc.get("copy").unwrap().value.to_json(),
            serde_json::json!({"x": 1})
        );
    }
}
