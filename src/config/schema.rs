//! The pipeline JSON Schema, generated from [`model`](super::model), and a
//! validator that checks a located YAML tree against it.
//!
//! The validator understands exactly the subset of JSON Schema 2020-12 that
//! `schemars` emits for the model (`$ref`, `type`, `properties`, `required`,
//! `additionalProperties`, `items`, `enum`, `const`, `oneOf`/`anyOf`,
//! `minimum`/`maximum` and integer `format`s). Unlike a serde deserializer it
//! does not stop at the first problem: it reports every one, each at the line
//! and column of the offending key or value. A unit test walks the generated
//! schema and fails on any keyword outside this subset, so the model cannot
//! drift into something the validator would silently ignore.

use serde_json::{Map, Value as Json};

use super::diagnostic::YamlPath;
use super::model::PipelineConfig;
use super::yaml::{Mark, Node, Value};

/// The JSON Schema of a pipeline file.
pub fn pipeline_schema() -> Json {
    let schema = schemars::schema_for!(PipelineConfig);
    serde_json::to_value(schema).unwrap_or(Json::Null)
}

/// The schema as written to `schemas/pipeline.schema.json`.
pub fn pipeline_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&pipeline_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// A structural problem found by the validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub mark: Mark,
    pub path: YamlPath,
    pub message: String,
}

/// Validates `node` against the pipeline schema.
pub fn validate(root_schema: &Json, node: &Node) -> Vec<Violation> {
    let mut v = Validator {
        root: root_schema,
        out: Vec::new(),
    };
    v.check(node, &YamlPath::root(), root_schema);
    v.out
}

struct Validator<'a> {
    root: &'a Json,
    out: Vec<Violation>,
}

/// What a schema accepts for a scalar, for messages: `one of day, month, year`.
fn allowed_values(schema: &Json) -> Option<Vec<String>> {
    if let Some(values) = schema.get("enum").and_then(Json::as_array) {
        return Some(values.iter().map(json_scalar_text).collect());
    }
    if let Some(c) = schema.get("const") {
        return Some(vec![json_scalar_text(c)]);
    }
    None
}

fn json_scalar_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl<'a> Validator<'a> {
    fn push(&mut self, mark: Mark, path: &YamlPath, message: String) {
        self.out.push(Violation {
            mark,
            path: path.clone(),
            message,
        });
    }

    fn resolve(&self, schema: &'a Json) -> &'a Json {
        let mut current = schema;
        // `$ref` chains are short; bound the walk anyway.
        for _ in 0..16 {
            let Some(reference) = current.get("$ref").and_then(Json::as_str) else {
                return current;
            };
            let Some(name) = reference.strip_prefix("#/$defs/") else {
                return current;
            };
            match self.root.get("$defs").and_then(|d| d.get(name)) {
                Some(target) => current = target,
                None => return current,
            }
        }
        current
    }

    fn check(&mut self, node: &Node, path: &YamlPath, schema: &'a Json) {
        let schema = self.resolve(schema);
        if let Some(alternatives) = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Json::as_array)
        {
            self.check_alternatives(node, path, alternatives);
            return;
        }
        if !self.check_type(node, path, schema) {
            return;
        }
        if let Some(allowed) = allowed_values(schema) {
            let text = match &node.value {
                Value::String { text, .. } => text.clone(),
                other => other_to_text(other),
            };
            if !allowed.contains(&text) {
                self.push(
                    node.mark,
                    path,
                    format!(
                        "unknown value `{text}`; expected one of: {}",
                        allowed.join(", ")
                    ),
                );
            }
            return;
        }
        match &node.value {
            Value::Map(_) => self.check_object(node, path, schema),
            Value::Seq(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item, &path.index(i), item_schema);
                    }
                }
            }
            Value::Int(i) => self.check_range(node.mark, path, *i as f64, schema),
            Value::Float(f) => self.check_range(node.mark, path, *f, schema),
            Value::Null | Value::Bool(_) | Value::String { .. } => {}
        }
    }

    /// `type`: returns false (after reporting) when the node has another kind.
    fn check_type(&mut self, node: &Node, path: &YamlPath, schema: &Json) -> bool {
        let types: Vec<&str> = match schema.get("type") {
            Some(Json::String(t)) => vec![t.as_str()],
            Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
            _ => return true,
        };
        let ok = types.iter().any(|t| kind_matches(&node.value, t));
        if !ok {
            let expected: Vec<&str> = types
                .iter()
                .filter(|t| **t != "null")
                .map(|t| type_name(t))
                .collect();
            let mut message = format!(
                "expected {}, found {}",
                expected.join(" or "),
                describe(&node.value)
            );
            if matches!(node.value, Value::Int(_) | Value::Float(_) | Value::Bool(_))
                && types.contains(&"string")
            {
                message.push_str("; quote it to make it a string");
            }
            self.push(node.mark, path, message);
        }
        ok
    }

    fn check_range(&mut self, mark: Mark, path: &YamlPath, value: f64, schema: &Json) {
        let (mut min, mut max) = match schema.get("format").and_then(Json::as_str) {
            Some("uint8") => (Some(0.0), Some(f64::from(u8::MAX))),
            Some("uint16") => (Some(0.0), Some(f64::from(u16::MAX))),
            Some("uint32") => (Some(0.0), Some(f64::from(u32::MAX))),
            Some("int32") => (Some(f64::from(i32::MIN)), Some(f64::from(i32::MAX))),
            _ => (None, None),
        };
        if let Some(m) = schema.get("minimum").and_then(Json::as_f64) {
            min = Some(min.map_or(m, |x: f64| x.max(m)));
        }
        if let Some(m) = schema.get("maximum").and_then(Json::as_f64) {
            max = Some(max.map_or(m, |x: f64| x.min(m)));
        }
        let fmt = |x: f64| format!("{x}");
        match (min, max) {
            (Some(lo), Some(hi)) if value < lo || value > hi => self.push(
                mark,
                path,
                format!(
                    "{} is out of range; expected {} to {}",
                    fmt(value),
                    fmt(lo),
                    fmt(hi)
                ),
            ),
            (Some(lo), None) if value < lo => self.push(
                mark,
                path,
                format!(
                    "{} is out of range; expected at least {}",
                    fmt(value),
                    fmt(lo)
                ),
            ),
            (None, Some(hi)) if value > hi => self.push(
                mark,
                path,
                format!(
                    "{} is out of range; expected at most {}",
                    fmt(value),
                    fmt(hi)
                ),
            ),
            _ => {}
        }
    }

    fn check_object(&mut self, node: &Node, path: &YamlPath, schema: &'a Json) {
        let Value::Map(entries) = &node.value else {
            return;
        };
        static EMPTY: std::sync::OnceLock<Map<String, Json>> = std::sync::OnceLock::new();
        let properties = schema
            .get("properties")
            .and_then(Json::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new));
        if let Some(required) = schema.get("required").and_then(Json::as_array) {
            for key in required.iter().filter_map(Json::as_str) {
                if !entries.iter().any(|e| e.key == key) {
                    let what = if path.is_root() {
                        "the pipeline".to_string()
                    } else {
                        format!("`{}`", path)
                    };
                    self.push(
                        node.mark,
                        &path.key(key),
                        format!("required key `{key}` is missing from {what}"),
                    );
                }
            }
        }
        let additional = schema.get("additionalProperties");
        for entry in entries {
            let entry_path = path.key(&entry.key);
            if let Some(property) = properties.get(&entry.key) {
                self.check(&entry.value, &entry_path, property);
                continue;
            }
            match additional {
                Some(Json::Bool(false)) => {
                    let known: Vec<&str> = properties.keys().map(String::as_str).collect();
                    let mut message = "unknown key".to_string();
                    match closest(&entry.key, &known) {
                        Some(suggestion) => {
                            message.push_str(&format!("; did you mean `{suggestion}`?"))
                        }
                        None => {
                            message.push_str(&format!("; expected one of: {}", known.join(", ")))
                        }
                    }
                    self.push(entry.key_mark, &entry_path, message);
                }
                Some(s @ Json::Object(_)) => self.check(&entry.value, &entry_path, s),
                _ => {}
            }
        }
    }

    fn check_alternatives(&mut self, node: &Node, path: &YamlPath, alternatives: &'a [Json]) {
        let resolved: Vec<&'a Json> = alternatives.iter().map(|a| self.resolve(a)).collect();

        // `T | null`: null is fine, anything else is checked against T alone.
        let non_null: Vec<&'a Json> = resolved
            .iter()
            .copied()
            .filter(|a| a.get("type").and_then(Json::as_str) != Some("null"))
            .collect();
        if non_null.len() < resolved.len() {
            if matches!(node.value, Value::Null) {
                return;
            }
            if let [only] = non_null.as_slice() {
                self.check(node, path, only);
                return;
            }
        }

        // A unit enum with documented variants: every alternative is a `const`.
        if non_null.iter().all(|a| a.get("const").is_some()) {
            let allowed: Vec<String> = non_null
                .iter()
                .filter_map(|a| a.get("const"))
                .map(json_scalar_text)
                .collect();
            let text = match &node.value {
                Value::String { text, .. } => text.clone(),
                other => other_to_text(other),
            };
            if !allowed.contains(&text) {
                self.push(
                    node.mark,
                    path,
                    format!(
                        "unknown value `{text}`; expected one of: {}",
                        allowed.join(", ")
                    ),
                );
            }
            return;
        }

        // An internally tagged enum: objects told apart by a `const` property.
        if let Some(tag) = discriminator(&non_null) {
            if !matches!(node.value, Value::Map(_)) {
                self.push(
                    node.mark,
                    path,
                    format!("expected a mapping, found {}", describe(&node.value)),
                );
                return;
            }
            let choices: Vec<String> = non_null
                .iter()
                .filter_map(|a| a.pointer(&format!("/properties/{tag}/const")))
                .map(json_scalar_text)
                .collect();
            let Some(entry) = node.get(&tag) else {
                self.push(
                    node.mark,
                    &path.key(&tag),
                    format!(
                        "required key `{tag}` is missing; expected one of: {}",
                        choices.join(", ")
                    ),
                );
                return;
            };
            let value = match &entry.value.value {
                Value::String { text, .. } => text.clone(),
                other => other_to_text(other),
            };
            match non_null.iter().find(|a| {
                a.pointer(&format!("/properties/{tag}/const"))
                    .map(json_scalar_text)
                    .as_deref()
                    == Some(value.as_str())
            }) {
                Some(chosen) => self.check(node, path, chosen),
                None => self.push(
                    entry.value.mark,
                    &path.key(&tag),
                    format!(
                        "unknown value `{value}`; expected one of: {}",
                        choices.join(", ")
                    ),
                ),
            }
            return;
        }

        // Untagged: the first alternative that accepts the node wins.
        for alternative in &non_null {
            let mut probe = Validator {
                root: self.root,
                out: Vec::new(),
            };
            probe.check(node, path, alternative);
            if probe.out.is_empty() {
                return;
            }
        }
        let kinds: Vec<&str> = non_null
            .iter()
            .filter_map(|a| a.get("type").and_then(Json::as_str))
            .map(type_name)
            .collect();
        self.push(
            node.mark,
            path,
            format!(
                "expected {}, found {}",
                kinds.join(" or "),
                describe(&node.value)
            ),
        );
    }
}

/// The property whose `const` tells the alternatives apart, if there is one.
fn discriminator(alternatives: &[&Json]) -> Option<String> {
    let first = alternatives.first()?;
    let properties = first.get("properties")?.as_object()?;
    properties
        .iter()
        .find(|(name, p)| {
            p.get("const").is_some()
                && alternatives
                    .iter()
                    .all(|a| a.pointer(&format!("/properties/{name}/const")).is_some())
        })
        .map(|(name, _)| name.clone())
}

fn kind_matches(value: &Value, ty: &str) -> bool {
    match ty {
        "null" => matches!(value, Value::Null),
        "boolean" => matches!(value, Value::Bool(_)),
        "integer" => matches!(value, Value::Int(_)),
        "number" => matches!(value, Value::Int(_) | Value::Float(_)),
        "string" => matches!(value, Value::String { .. }),
        "array" => matches!(value, Value::Seq(_)),
        "object" => matches!(value, Value::Map(_)),
        _ => true,
    }
}

fn type_name(ty: &str) -> &str {
    match ty {
        "boolean" => "a boolean (true or false)",
        "integer" => "an integer",
        "number" => "a number",
        "string" => "a string",
        "array" => "a list",
        "object" => "a mapping",
        other => other,
    }
}

/// The kind of a value for messages. Strings are not quoted back: they may be
/// secrets.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Int(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the number {f}"),
        Value::String { .. } => "a string".to_string(),
        Value::Seq(_) => "a list".to_string(),
        Value::Map(_) => "a mapping".to_string(),
    }
}

fn other_to_text(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::String { text, .. } => text.clone(),
        Value::Seq(_) => "(a list)".to_string(),
        Value::Map(_) => "(a mapping)".to_string(),
    }
}

/// The known key closest to a misspelt one, if it is close enough to be the
/// likely intent.
pub fn closest<'k>(word: &str, candidates: &[&'k str]) -> Option<&'k str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution =
                previous.get(j).copied().unwrap_or(usize::MAX) + usize::from(ca != cb);
            let deletion = previous
                .get(j + 1)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            let insertion = current
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            current.push(substitution.min(deletion).min(insertion));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    const KNOWN_KEYWORDS: &[&str] = &[
        "$schema",
        "$defs",
        "$ref",
        "title",
        "description",
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "oneOf",
        "anyOf",
        "minimum",
        "maximum",
        "format",
        "default",
    ];

    /// Every keyword the generated schema uses is one the validator handles.
    #[test]
    fn schema_uses_only_the_supported_subset() {
        fn walk(v: &Json, at: &str) {
            let Json::Object(map) = v else { return };
            for (k, child) in map {
                assert!(
                    KNOWN_KEYWORDS.contains(&k.as_str()),
                    "schema keyword `{k}` at {at} is not handled by the validator"
                );
                match k.as_str() {
                    "properties" | "$defs" => {
                        for (name, sub) in child.as_object().unwrap() {
                            walk(sub, &format!("{at}/{k}/{name}"));
                        }
                    }
                    "oneOf" | "anyOf" => {
                        for (i, sub) in child.as_array().unwrap().iter().enumerate() {
                            walk(sub, &format!("{at}/{k}/{i}"));
                        }
                    }
                    "items" | "additionalProperties" => walk(child, &format!("{at}/{k}")),
                    _ => {}
                }
            }
        }
        walk(&pipeline_schema(), "#");
    }

    fn violations(text: &str) -> Vec<Violation> {
        let node = yaml::parse(text).unwrap().unwrap();
        validate(&pipeline_schema(), &node)
    }

    const VALID: &str = "\
name: shop
source:
  type: postgres
  url: postgres://cdc@127.0.0.1:5432/shop
  tables:
    - name: public.orders
      partition_by: { column: created_at, granularity: day }
kafka:
  brokers: 127.0.0.1:9092
  properties:
    linger.ms: 5
    client.id: tw
lake:
  uri: file:///tmp/lake
";

    #[test]
    fn a_valid_pipeline_has_no_violations() {
        assert_eq!(violations(VALID), vec![]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "\
name: shop
source:
  type: postgres
  url: 5
  tabels: []
  snapshot: sometimes
kafka:
  topic_partitions: 0
lake:
  uri: file:///tmp/lake
  commit_interval_secs: \"30\"
";
        let got: Vec<(String, usize, usize, String)> = violations(text)
            .into_iter()
            .map(|v| (v.path.to_string(), v.mark.line, v.mark.column, v.message))
            .collect();
        let expect = |path: &str, line: usize, column: usize, fragment: &str| {
            assert!(
                got.iter().any(|(p, l, c, m)| p == path
                    && *l == line
                    && *c == column
                    && m.contains(fragment)),
                "no violation at {path} {line}:{column} containing {fragment:?} in {got:#?}"
            );
        };
        expect("source.tables", 3, 3, "required key `tables` is missing");
        expect(
            "source.url",
            4,
            8,
            "expected a string, found the integer 5; quote it",
        );
        expect("source.tabels", 5, 3, "unknown key; did you mean `tables`?");
        expect(
            "source.snapshot",
            6,
            13,
            "unknown value `sometimes`; expected one of: initial, never",
        );
        expect("kafka.brokers", 8, 3, "required key `brokers` is missing");
        expect(
            "kafka.topic_partitions",
            8,
            21,
            "0 is out of range; expected 1 to 10000",
        );
        expect(
            "lake.commit_interval_secs",
            11,
            25,
            "expected an integer, found a string",
        );
        assert_eq!(got.len(), 7, "{got:#?}");
    }

    #[test]
    fn source_type_is_checked_first() {
        let v = violations(
            "name: a\nsource:\n  type: oracle\n  url: x\n  tables: []\nkafka: {brokers: b}\n",
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].path.to_string(), "source.type");
        assert_eq!(
            v[0].message,
            "unknown value `oracle`; expected one of: postgres, mysql"
        );
        let v = violations("name: a\nsource:\n  url: x\n  tables: []\nkafka: {brokers: b}\n");
        assert_eq!(
            v[0].message,
            "required key `type` is missing; expected one of: postgres, mysql"
        );
    }

    #[test]
    fn postgres_only_keys_are_unknown_for_mysql() {
        let v = violations(
            "name: a\nsource:\n  type: mysql\n  url: mysql://h\n  slot: s\n  tables: []\nkafka: {brokers: b}\n",
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].path.to_string(), "source.slot");
        assert!(v[0].message.starts_with("unknown key"), "{}", v[0].message);
    }

    #[test]
    fn untagged_property_values_accept_scalars_only() {
        let v = violations(
            "name: a\nsource: {type: mysql, url: u, tables: []}\nkafka:\n  brokers: b\n  properties:\n    linger.ms: [1]\n",
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].path.to_string(), "kafka.properties[\"linger.ms\"]");
        assert_eq!(
            v[0].message,
            "expected a string or an integer or a boolean (true or false), found a list"
        );
    }

    #[test]
    fn suggestions_need_a_close_match() {
        assert_eq!(closest("tabels", &["tables", "url"]), Some("tables"));
        assert_eq!(
            closest("brokerz", &["brokers", "topic_prefix"]),
            Some("brokers")
        );
        assert_eq!(closest("zzz", &["tables", "url"]), None);
    }
}
