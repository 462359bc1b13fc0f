//! The pipeline-file reference as a Markdown table, generated from the JSON
//! Schema (and so from the model's doc comments). The README embeds it between
//! markers and a test fails when the README is stale.

use serde_json::Value as Json;

use super::schema::pipeline_schema;

/// Markers around the generated table in `README.md`.
pub const BEGIN_MARKER: &str =
    "<!-- BEGIN pipeline-reference (generated: tidewater schema --markdown) -->";
pub const END_MARKER: &str = "<!-- END pipeline-reference -->";

struct Row {
    key: String,
    ty: String,
    default: String,
    description: String,
}

/// The reference table.
pub fn markdown_reference() -> String {
    let schema = pipeline_schema();
    let mut rows = Vec::new();
    walk(&schema, &schema, "", &mut rows);
    let mut out = String::from("| key | type | default | description |\n|---|---|---|---|\n");
    for row in rows {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            row.key, row.ty, row.default, row.description
        ));
    }
    out
}

fn resolve<'a>(root: &'a Json, schema: &'a Json) -> &'a Json {
    match schema
        .get("$ref")
        .and_then(Json::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| root.get("$defs")?.get(name))
    {
        Some(target) => resolve(root, target),
        None => schema,
    }
}

/// The schema without its `null` alternative, for `Option<T>` fields.
fn non_null<'a>(root: &'a Json, schema: &'a Json) -> &'a Json {
    let schema = resolve(root, schema);
    if let Some(alts) = schema.get("anyOf").and_then(Json::as_array) {
        let rest: Vec<&Json> = alts
            .iter()
            .filter(|a| a.get("type").and_then(Json::as_str) != Some("null"))
            .collect();
        if let [only] = rest.as_slice() {
            return resolve(root, only);
        }
    }
    schema
}

fn walk(root: &Json, schema: &Json, prefix: &str, rows: &mut Vec<Row>) {
    let schema = non_null(root, schema);
    if let Some(variants) = schema.get("oneOf").and_then(Json::as_array)
        && variants.iter().all(|v| v.get("properties").is_some())
    {
        walk_variants(root, variants, prefix, rows);
        return;
    }
    let Some(properties) = schema.get("properties").and_then(Json::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Json::as_array)
        .map(|r| r.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    for (name, property) in properties {
        push_property(
            root,
            name,
            property,
            required.contains(&name.as_str()),
            prefix,
            "",
            rows,
        );
    }
}

/// An internally tagged enum (`source`): the union of the variants' keys, each
/// marked with the variants it belongs to when not all.
fn walk_variants(root: &Json, variants: &[Json], prefix: &str, rows: &mut Vec<Row>) {
    let tag_of = |v: &Json| -> Option<(String, String)> {
        let props = v.get("properties")?.as_object()?;
        props.iter().find_map(|(name, p)| {
            p.get("const")
                .and_then(Json::as_str)
                .map(|c| (name.clone(), c.to_string()))
        })
    };
    let mut order: Vec<String> = Vec::new();
    for v in variants {
        if let Some(props) = v.get("properties").and_then(Json::as_object) {
            for name in props.keys() {
                if !order.contains(name) {
                    order.push(name.clone());
                }
            }
        }
    }
    for name in order {
        let owners: Vec<(&Json, String)> = variants
            .iter()
            .filter(|v| v.pointer(&format!("/properties/{name}")).is_some())
            .filter_map(|v| Some((v, tag_of(v)?.1)))
            .collect();
        let Some((first, _)) = owners.first() else {
            continue;
        };
        let Some(property) = first.pointer(&format!("/properties/{name}")) else {
            continue;
        };
        if property.get("const").is_some() {
            let values: Vec<String> = variants
                .iter()
                .filter_map(|v| tag_of(v).map(|t| format!("`{}`", t.1)))
                .collect();
            rows.push(Row {
                key: join(prefix, &name),
                ty: format!("one of {}", values.join(", ")),
                default: "required".into(),
                description: "The kind of source.".into(),
            });
            continue;
        }
        let required = first
            .get("required")
            .and_then(Json::as_array)
            .is_some_and(|r| r.iter().any(|k| k.as_str() == Some(name.as_str())));
        let only = if owners.len() < variants.len() {
            let names: Vec<String> = owners.iter().map(|(_, t)| t.clone()).collect();
            format!("({} only) ", names.join(", "))
        } else {
            String::new()
        };
        push_property(root, &name, property, required, prefix, &only, rows);
    }
}

fn push_property(
    root: &Json,
    name: &str,
    property: &Json,
    required: bool,
    prefix: &str,
    note: &str,
    rows: &mut Vec<Row>,
) {
    let key = join(prefix, name);
    let description = property
        .get("description")
        .or_else(|| non_null(root, property).get("description"))
        .and_then(Json::as_str)
        .map(first_paragraph)
        .unwrap_or_default();
    let target = non_null(root, property);
    let default = match (required, property.get("default")) {
        (true, _) => "required".to_string(),
        (false, Some(d)) => format!("`{}`", json_text(d)),
        (false, None) => "—".to_string(),
    };
    let values = documented_values(target);
    let description = if values.is_empty() {
        description
    } else {
        format!("{description} {values}")
    };
    rows.push(Row {
        key: key.clone(),
        ty: type_text(root, target),
        default,
        description: format!("{note}{}", escape(description.trim())),
    });
    let is_array = target.get("type").and_then(Json::as_str) == Some("array")
        || target
            .get("type")
            .and_then(Json::as_array)
            .is_some_and(|t| t.iter().any(|x| x.as_str() == Some("array")));
    if is_array {
        if let Some(items) = target.get("items") {
            walk(root, items, &format!("{key}[]"), rows);
        }
    } else if target.get("properties").is_some() || target.get("oneOf").is_some() {
        walk(root, target, &key, rows);
    }
}

/// `` `a`: what a means; `b`: what b means `` for enums with documented values.
fn documented_values(schema: &Json) -> String {
    let Some(alts) = schema.get("oneOf").and_then(Json::as_array) else {
        return String::new();
    };
    let parts: Vec<String> = alts
        .iter()
        .filter_map(|a| {
            let value = json_text(a.get("const")?);
            let text = first_paragraph(a.get("description")?.as_str()?);
            Some(format!("`{value}`: {}", text.trim_end_matches('.')))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("{}.", parts.join("; "))
    }
}

fn type_text(root: &Json, schema: &Json) -> String {
    let schema = non_null(root, schema);
    if let Some(values) = schema.get("enum").and_then(Json::as_array) {
        let v: Vec<String> = values
            .iter()
            .map(|x| format!("`{}`", json_text(x)))
            .collect();
        return format!("one of {}", v.join(", "));
    }
    if let Some(alts) = schema.get("oneOf").and_then(Json::as_array) {
        if alts.iter().all(|a| a.get("const").is_some()) {
            let v: Vec<String> = alts
                .iter()
                .filter_map(|a| a.get("const"))
                .map(|x| format!("`{}`", json_text(x)))
                .collect();
            return format!("one of {}", v.join(", "));
        }
        return "mapping".into();
    }
    if let Some(alts) = schema.get("anyOf").and_then(Json::as_array) {
        let v: Vec<String> = alts.iter().map(|a| type_text(root, a)).collect();
        return v.join(" or ");
    }
    let ty = match schema.get("type") {
        Some(Json::String(t)) => t.clone(),
        Some(Json::Array(ts)) => ts
            .iter()
            .filter_map(Json::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_string(),
        _ => String::new(),
    };
    match ty.as_str() {
        "array" => {
            let item = schema
                .get("items")
                .map(|i| type_text(root, i))
                .unwrap_or_default();
            format!("list of {item}")
        }
        "object" => {
            if let Some(values) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                format!("mapping of {}", type_text(root, values))
            } else {
                "mapping".into()
            }
        }
        "integer" => {
            let min = schema.get("minimum").and_then(Json::as_i64);
            let max = schema.get("maximum").and_then(Json::as_i64);
            match (min, max) {
                (Some(lo), Some(hi)) => format!("integer {lo}–{hi}"),
                (Some(lo), None) if lo > 0 => format!("integer ≥ {lo}"),
                _ => "integer".into(),
            }
        }
        other => other.to_string(),
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn json_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn first_paragraph(text: &str) -> String {
    text.split("\n\n")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_lists_nested_keys_with_types_and_defaults() {
        let md = markdown_reference();
        assert!(md.contains("| `name` | string | required |"), "{md}");
        assert!(
            md.contains("| `source.type` | one of `postgres`, `mysql` | required |"),
            "{md}"
        );
        assert!(
            md.contains("| `source.slot` | string | — | (postgres only) "),
            "{md}"
        );
        assert!(
            md.contains("| `source.server_id` | integer ≥ 1 | — | (mysql only) "),
            "{md}"
        );
        assert!(
            md.contains("| `source.tables[].partition_by.granularity` | one of `day`, `month`, `year` | `day` |"),
            "{md}"
        );
        assert!(
            md.contains("| `kafka.topic_partitions` | integer 1–10000 | `4` |"),
            "{md}"
        );
        assert!(
            md.contains("| `lake.commit_interval_secs` | integer 1–86400 | `30` |"),
            "{md}"
        );
    }
}
