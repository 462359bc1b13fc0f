//! What a statement in a binlog query event does to captured tables.
//!
//! Table shapes come from the table maps (see [`super::columns`]), so DDL
//! needs no full parser: this recognises `BEGIN`/`COMMIT`, `TRUNCATE` (which
//! writes no row events and must become a truncate event), and the tables a
//! `CREATE`/`ALTER`/`DROP`/`RENAME TABLE` names, for the log. Comments and
//! quoting (`` `db`.`t` ``) are handled; anything else is `Other`.

use crate::event::table_id::TableId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Begin,
    Commit,
    Truncate(TableId),
    /// A table DDL and every table it names.
    Ddl {
        verb: String,
        tables: Vec<TableId>,
    },
    Other,
}

/// Classifies `sql`, run with `default_db` as the current database.
pub fn classify(sql: &str, default_db: &str) -> Statement {
    let tokens = tokenize(sql);
    let word = |i: usize| {
        tokens
            .get(i)
            .map(|t| t.to_ascii_uppercase())
            .unwrap_or_default()
    };
    match word(0).as_str() {
        "BEGIN" => Statement::Begin,
        "COMMIT" => Statement::Commit,
        "XA" if word(1) == "COMMIT" => Statement::Commit,
        "TRUNCATE" => {
            let at = if word(1) == "TABLE" { 2 } else { 1 };
            match table_at(&tokens, at, default_db) {
                Some((id, _)) => Statement::Truncate(id),
                None => Statement::Other,
            }
        }
        verb @ ("CREATE" | "ALTER" | "DROP" | "RENAME") => {
            // Skip modifiers up to TABLE (CREATE OR REPLACE TEMPORARY TABLE, ALTER ONLINE IGNORE TABLE).
            let Some(table_kw) = tokens
                .iter()
                .take(6)
                .position(|t| t.eq_ignore_ascii_case("TABLE"))
            else {
                return Statement::Other;
            };
            let mut tables = Vec::new();
            let mut i = table_kw + 1;
            while word(i) == "IF" {
                i += if word(i + 1) == "NOT" { 3 } else { 2 };
            }
            let multi = matches!(verb, "DROP" | "RENAME");
            while let Some((id, next)) = table_at(&tokens, i, default_db) {
                tables.push(id);
                i = next;
                match word(i).as_str() {
                    "," if multi => i += 1,
                    "TO" if verb == "RENAME" => i += 1,
                    "RENAME" if verb == "ALTER" => {
                        // ALTER TABLE a RENAME [TO|AS] b
                        i += 1;
                        if matches!(word(i).as_str(), "TO" | "AS") {
                            i += 1;
                        }
                    }
                    "LIKE" if verb == "CREATE" => i += 1,
                    _ => break,
                }
            }
            Statement::Ddl {
                verb: verb.to_string(),
                tables,
            }
        }
        _ => Statement::Other,
    }
}

/// A `name` or `db.name` at token `i`, and the token after it.
fn table_at(tokens: &[String], i: usize, default_db: &str) -> Option<(TableId, usize)> {
    let first = tokens.get(i)?;
    if !is_name(first) {
        return None;
    }
    if tokens.get(i + 1).map(String::as_str) == Some(".") {
        let second = tokens.get(i + 2)?;
        if !is_name(second) {
            return None;
        }
        return Some((TableId::new(unquote(first), unquote(second)), i + 3));
    }
    Some((TableId::new(default_db, unquote(first)), i + 1))
}

fn is_name(t: &str) -> bool {
    t.starts_with('`')
        || t.chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

fn unquote(t: &str) -> String {
    match t.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        Some(inner) => inner.replace("``", "`"),
        None => t.to_string(),
    }
}

/// Words, backquoted names, `.` `,` `(` `)` and string literals; comments
/// dropped.
fn tokenize(sql: &str) -> Vec<String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    while let Some(c) = at(i) {
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == Some('*') {
            // MySQL's executable comments /*!50100 ... */ hold SQL: keep
            // their content.
            if at(i + 2) == Some('!') {
                i += 3;
                while at(i).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                }
                continue;
            }
            i += 2;
            while at(i).is_some() && !(at(i) == Some('*') && at(i + 1) == Some('/')) {
                i += 1;
            }
            i += 2;
        } else if c == '*' && at(i + 1) == Some('/') {
            i += 2;
        } else if c == '#' || (c == '-' && at(i + 1) == Some('-')) {
            while at(i).is_some_and(|c| c != '\n') {
                i += 1;
            }
        } else if c == '`' || c == '\'' || c == '"' {
            let start = i;
            i += 1;
            while let Some(d) = at(i) {
                i += 1;
                if d == c {
                    if at(i) == Some(c) {
                        i += 1;
                        continue;
                    }
                    break;
                }
                if d == '\\' && c != '`' {
                    i += 1;
                }
            }
            out.push(
                chars
                    .get(start..i.min(chars.len()))
                    .unwrap_or_default()
                    .iter()
                    .collect(),
            );
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while at(i).is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                i += 1;
            }
            out.push(chars.get(start..i).unwrap_or_default().iter().collect());
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(db: &str, name: &str) -> TableId {
        TableId::new(db, name)
    }

    #[test]
    fn transactions_and_truncates() {
        assert_eq!(classify("BEGIN", "d"), Statement::Begin);
        assert_eq!(classify("commit", "d"), Statement::Commit);
        assert_eq!(
            classify("TRUNCATE TABLE orders", "shop"),
            Statement::Truncate(t("shop", "orders"))
        );
        assert_eq!(
            classify("/* by app */ truncate `other db`.`my``t`", "shop"),
            Statement::Truncate(t("other db", "my`t"))
        );
        assert_eq!(
            classify("truncate shop.orders", "x"),
            Statement::Truncate(t("shop", "orders"))
        );
    }

    #[test]
    fn ddl_names_its_tables() {
        let ddl = |sql: &str| match classify(sql, "shop") {
            Statement::Ddl { verb, tables } => (verb, tables),
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(
            ddl("ALTER TABLE orders ADD COLUMN note text"),
            ("ALTER".into(), vec![t("shop", "orders")])
        );
        assert_eq!(
            ddl("CREATE TABLE IF NOT EXISTS `shop`.`x` (id int primary key)"),
            ("CREATE".into(), vec![t("shop", "x")])
        );
        assert_eq!(
            ddl("DROP TABLE IF EXISTS a, b.c /* generated by server */"),
            ("DROP".into(), vec![t("shop", "a"), t("b", "c")])
        );
        assert_eq!(
            ddl("RENAME TABLE orders TO orders_old, orders_new TO orders"),
            (
                "RENAME".into(),
                vec![
                    t("shop", "orders"),
                    t("shop", "orders_old"),
                    t("shop", "orders_new"),
                    t("shop", "orders")
                ]
            )
        );
        assert_eq!(
            ddl("ALTER TABLE a RENAME TO b"),
            ("ALTER".into(), vec![t("shop", "a"), t("shop", "b")])
        );
        assert_eq!(
            ddl("CREATE OR REPLACE TABLE t2 LIKE t1"),
            ("CREATE".into(), vec![t("shop", "t2"), t("shop", "t1")])
        );
        assert_eq!(
            classify("CREATE INDEX i ON t (a)", "shop"),
            Statement::Other
        );
        assert_eq!(
            classify("INSERT INTO t VALUES (1)", "shop"),
            Statement::Other
        );
        assert_eq!(classify("", "shop"), Statement::Other);
        assert_eq!(
            classify("DROP TABLE", "shop"),
            Statement::Ddl {
                verb: "DROP".into(),
                tables: vec![]
            }
        );
    }
}
