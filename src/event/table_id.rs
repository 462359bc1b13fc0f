//! The identity of a captured table: `schema.table` (Postgres) or
//! `database.table` (MySQL), parsed from what users write in pipeline files.
//!
//! Each part is either unquoted (letters, digits, `_`, `$`; Postgres folds it to
//! lower case, as the server does) or quoted with `"` (MySQL also accepts
//! backticks), in which case it is taken exactly, with a doubled quote standing
//! for one. So `public."Order Items"` and `"sales.eu"."line""items"` name
//! tables whose names hold spaces, dots and quotes, which is exactly what the
//! server stores.

use std::fmt;

/// Which server's identifier rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
}

/// A table's two-part name, as the server stores it (unquoted, unescaped).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    pub schema: String,
    pub name: String,
}

impl TableId {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableId {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// Parses `schema.table`. The error says what is wrong in words a user
    /// can act on.
    pub fn parse(text: &str, dialect: Dialect) -> Result<TableId, String> {
        let parts = split_parts(text, dialect)?;
        match <[String; 2]>::try_from(parts) {
            Ok([schema, name]) => Ok(TableId { schema, name }),
            Err(parts) => {
                let what = match dialect {
                    Dialect::Postgres => "`schema.table`",
                    Dialect::Mysql => "`database.table`",
                };
                Err(format!(
                    "a table name is {what} (two parts), this has {}; quote a part that contains a dot",
                    parts.len()
                ))
            }
        }
    }
}

impl fmt::Display for TableId {
    /// The name in a form that parses back to the same table under the
    /// Postgres rules: parts quoted only when they need it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_part(f, &self.schema)?;
        f.write_str(".")?;
        write_part(f, &self.name)
    }
}

fn write_part(f: &mut fmt::Formatter<'_>, part: &str) -> fmt::Result {
    let plain = !part.is_empty()
        && part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !part.starts_with(|c: char| c.is_ascii_digit() || c == '$');
    if plain {
        f.write_str(part)
    } else {
        write!(f, "\"{}\"", part.replace('"', "\"\""))
    }
}

fn split_parts(text: &str, dialect: Dialect) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let part = match chars.peek().copied() {
            None => return Err(empty_part(parts.len())),
            Some(q @ '"') | Some(q @ '`') => {
                if q == '`' && dialect == Dialect::Postgres {
                    return Err(
                        "backticks quote names in MySQL only; use \"..\" for Postgres".into(),
                    );
                }
                chars.next();
                let mut part = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("a {q} quote is not closed")),
                        Some(c) if c == q => {
                            if chars.peek() == Some(&q) {
                                chars.next();
                                part.push(q);
                            } else {
                                break;
                            }
                        }
                        Some(c) => part.push(c),
                    }
                }
                if part.is_empty() {
                    return Err(empty_part(parts.len()));
                }
                part
            }
            Some(_) => {
                let mut part = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if !(c.is_alphanumeric() || c == '_' || c == '$') {
                        let shown = if c.is_whitespace() {
                            "a space".to_string()
                        } else {
                            format!("`{c}`")
                        };
                        return Err(format!(
                            "an unquoted name cannot contain {shown}; quote that part with \"..\""
                        ));
                    }
                    part.push(c);
                    chars.next();
                }
                if part.is_empty() {
                    return Err(empty_part(parts.len()));
                }
                match dialect {
                    // Postgres folds unquoted identifiers; only ASCII letters,
                    // as the server does for UTF-8 databases.
                    Dialect::Postgres => part.to_ascii_lowercase(),
                    Dialect::Mysql => part,
                }
            }
        };
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(c) => {
                return Err(format!(
                    "unexpected `{c}` after a quoted name; parts are separated by `.`"
                ));
            }
        }
    }
}

fn empty_part(index: usize) -> String {
    let which = match index {
        0 => "schema",
        _ => "table",
    };
    format!("the {which} part of the name is empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(text: &str) -> Result<TableId, String> {
        TableId::parse(text, Dialect::Postgres)
    }

    #[test]
    fn unquoted_names_fold_in_postgres_only() {
        assert_eq!(
            pg("public.orders").unwrap(),
            TableId::new("public", "orders")
        );
        assert_eq!(
            pg("Public.Orders").unwrap(),
            TableId::new("public", "orders")
        );
        assert_eq!(
            TableId::parse("Shop.Orders", Dialect::Mysql).unwrap(),
            TableId::new("Shop", "Orders")
        );
    }

    #[test]
    fn quoted_parts_keep_dots_spaces_quotes_and_unicode() {
        assert_eq!(
            pg(r#""sales.eu"."line ""items""""#).unwrap(),
            TableId::new("sales.eu", "line \"items\"")
        );
        assert_eq!(
            pg("public.\"Order Items\"").unwrap(),
            TableId::new("public", "Order Items")
        );
        assert_eq!(
            pg("public.\"zürich😀\"").unwrap(),
            TableId::new("public", "zürich😀")
        );
        assert_eq!(
            TableId::parse("`my db`.`t``x`", Dialect::Mysql).unwrap(),
            TableId::new("my db", "t`x")
        );
    }

    #[test]
    fn display_round_trips() {
        for id in [
            TableId::new("public", "orders"),
            TableId::new("sales.eu", "line \"items\""),
            TableId::new("public", "Order Items"),
            TableId::new("s", "1abc"),
        ] {
            assert_eq!(pg(&id.to_string()).unwrap(), id, "{id}");
        }
    }

    #[test]
    fn bad_names_say_what_is_wrong() {
        assert!(pg("orders").unwrap_err().contains("two parts), this has 1"));
        assert!(pg("a.b.c").unwrap_err().contains("this has 3"));
        assert!(
            pg("public.")
                .unwrap_err()
                .contains("table part of the name is empty")
        );
        assert!(
            pg(".orders")
                .unwrap_err()
                .contains("schema part of the name is empty")
        );
        assert!(pg("public.\"orders").unwrap_err().contains("not closed"));
        assert!(
            pg("public.order items")
                .unwrap_err()
                .contains("cannot contain a space")
        );
        assert!(
            pg("public.orders-2024")
                .unwrap_err()
                .contains("cannot contain `-`")
        );
        assert!(pg("`a`.b").unwrap_err().contains("MySQL only"));
        assert!(pg("\"a\"x.b").unwrap_err().contains("unexpected `x`"));
        assert!(pg("").unwrap_err().contains("schema part"));
    }
}
