//! `${env:NAME}` and `${file:/path}` references in pipeline files.
//!
//! Any string value may hold references; they are replaced before the file is
//! validated, so `server_id: ${env:SERVER_ID}` is checked as the integer it
//! becomes. `$${` writes a literal `${`. A `${file:..}` path is absolute or
//! relative to the pipeline file's directory, and one trailing newline of the
//! file is dropped (as `echo secret > file` writes one).
//!
//! Invariant: resolved values are never part of a message. Errors name the
//! reference (`${env:PG_PASSWORD}`), never what it resolved to.

use std::path::{Path, PathBuf};

use super::diagnostic::YamlPath;
use super::yaml::{Mark, Node, Value, resolve_plain};

/// Where references are looked up; tests substitute their own environment.
pub trait Lookup {
    fn env(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &Path) -> std::io::Result<String>;
}

/// The process environment and file system.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// A reference that could not be resolved, at the string that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceError {
    pub mark: Mark,
    pub path: YamlPath,
    pub message: String,
}

/// Replaces every reference in the tree. `base_dir` anchors relative
/// `${file:..}` paths. Returns the paths of values that held a reference (they
/// are secret-bearing: nothing may echo them) and every error.
pub fn resolve(
    root: &mut Node,
    base_dir: &Path,
    lookup: &dyn Lookup,
) -> (Vec<YamlPath>, Vec<ReferenceError>) {
    let mut resolved = Vec::new();
    let mut errors = Vec::new();
    walk(
        root,
        &YamlPath::root(),
        base_dir,
        lookup,
        &mut resolved,
        &mut errors,
    );
    (resolved, errors)
}

fn walk(
    node: &mut Node,
    path: &YamlPath,
    base_dir: &Path,
    lookup: &dyn Lookup,
    resolved: &mut Vec<YamlPath>,
    errors: &mut Vec<ReferenceError>,
) {
    match &mut node.value {
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &path.index(i), base_dir, lookup, resolved, errors);
            }
        }
        Value::Map(entries) => {
            for entry in entries.iter_mut() {
                let p = path.key(&entry.key);
                walk(&mut entry.value, &p, base_dir, lookup, resolved, errors);
            }
        }
        Value::String { text, plain } => {
            if !text.contains('$') {
                return;
            }
            match substitute(text, base_dir, lookup) {
                Ok(None) => {}
                Ok(Some(out)) => {
                    resolved.push(path.clone());
                    let whole_reference = text.starts_with("${") && text.ends_with('}');
                    let was_plain = *plain;
                    node.value = if was_plain && whole_reference {
                        // `port: ${env:PORT}` becomes the integer it names.
                        resolve_plain(&out)
                    } else {
                        Value::String {
                            text: out,
                            plain: false,
                        }
                    };
                }
                Err(messages) => {
                    for message in messages {
                        errors.push(ReferenceError {
                            mark: node.mark,
                            path: path.clone(),
                            message,
                        });
                    }
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
    }
}

/// Substitutes the references in one string. `Ok(None)` when it holds none
/// (only `$` signs or `$${` escapes are rewritten too, so those return `Some`).
pub fn substitute(
    text: &str,
    base_dir: &Path,
    lookup: &dyn Lookup,
) -> Result<Option<String>, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut changed = false;
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        let (before, from_dollar) = rest.split_at(pos);
        out.push_str(before);
        if let Some(after) = from_dollar.strip_prefix("$${") {
            out.push_str("${");
            changed = true;
            rest = after;
        } else if let Some(after) = from_dollar.strip_prefix("${") {
            changed = true;
            let Some(end) = after.find('}') else {
                errors.push("`${` has no closing `}`; write `$${` for a literal `${`".to_string());
                rest = "";
                break;
            };
            let (inner, tail) = after.split_at(end);
            rest = tail.strip_prefix('}').unwrap_or(tail);
            match resolve_one(inner, base_dir, lookup) {
                Ok(value) => out.push_str(&value),
                Err(e) => errors.push(e),
            }
        } else {
            out.push('$');
            rest = from_dollar.strip_prefix('$').unwrap_or("");
        }
    }
    out.push_str(rest);
    if !errors.is_empty() {
        Err(errors)
    } else if changed {
        Ok(Some(out))
    } else {
        Ok(None)
    }
}

fn resolve_one(inner: &str, base_dir: &Path, lookup: &dyn Lookup) -> Result<String, String> {
    let Some((kind, arg)) = inner.split_once(':') else {
        return Err(format!(
            "`${{{inner}}}` is not a reference; write `${{env:NAME}}` or `${{file:/path}}`"
        ));
    };
    match kind {
        "env" => {
            if !is_env_name(arg) {
                return Err(format!(
                    "`${{env:{arg}}}`: `{arg}` is not a valid environment variable name"
                ));
            }
            lookup
                .env(arg)
                .ok_or_else(|| format!("`${{env:{arg}}}`: environment variable {arg} is not set"))
        }
        "file" => {
            if arg.is_empty() {
                return Err("`${file:}` names no file".to_string());
            }
            let path = if Path::new(arg).is_absolute() {
                PathBuf::from(arg)
            } else {
                base_dir.join(arg)
            };
            match lookup.read_file(&path) {
                Ok(mut content) => {
                    if content.ends_with('\n') {
                        content.pop();
                        if content.ends_with('\r') {
                            content.pop();
                        }
                    }
                    Ok(content)
                }
                Err(e) => Err(format!(
                    "`${{file:{arg}}}`: cannot read {}: {e}",
                    path.display()
                )),
            }
        }
        other => Err(format!(
            "`${{{other}:..}}` is not a known reference kind; use `${{env:NAME}}` or `${{file:/path}}`"
        )),
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::yaml;

    struct FakeLookup {
        env: HashMap<&'static str, &'static str>,
        files: HashMap<PathBuf, &'static str>,
    }

    impl Lookup for FakeLookup {
        fn env(&self, name: &str) -> Option<String> {
            self.env.get(name).map(|s| s.to_string())
        }
        fn read_file(&self, path: &Path) -> std::io::Result<String> {
            self.files
                .get(path)
                .map(|s| s.to_string())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }

    fn lookup() -> FakeLookup {
        FakeLookup {
            env: HashMap::from([("PG_PASSWORD", "s3cr3t"), ("SERVER_ID", "5401")]),
            files: HashMap::from([
                (PathBuf::from("/run/secrets/pg"), "from-file\n"),
                (PathBuf::from("/etc/tw/rel.txt"), "relative"),
            ]),
        }
    }

    fn sub(text: &str) -> Result<Option<String>, Vec<String>> {
        substitute(text, Path::new("/etc/tw"), &lookup())
    }

    #[test]
    fn env_and_file_references_resolve() {
        assert_eq!(sub("${env:PG_PASSWORD}").unwrap().unwrap(), "s3cr3t");
        assert_eq!(
            sub("postgres://cdc:${env:PG_PASSWORD}@h/db")
                .unwrap()
                .unwrap(),
            "postgres://cdc:s3cr3t@h/db"
        );
        assert_eq!(
            sub("${file:/run/secrets/pg}").unwrap().unwrap(),
            "from-file"
        );
        assert_eq!(sub("${file:rel.txt}").unwrap().unwrap(), "relative");
        assert_eq!(sub("plain $ sign").unwrap(), None);
        assert_eq!(sub("$${env:X}").unwrap().unwrap(), "${env:X}");
    }

    #[test]
    fn unresolved_references_name_the_reference_not_a_value() {
        let errs = sub("${env:MISSING}").unwrap_err();
        assert_eq!(
            errs,
            vec!["`${env:MISSING}`: environment variable MISSING is not set"]
        );
        let errs = sub("${file:/nope}").unwrap_err();
        assert!(
            errs[0].starts_with("`${file:/nope}`: cannot read /nope"),
            "{errs:?}"
        );
        let errs = sub("${vault:x}").unwrap_err();
        assert!(errs[0].contains("not a known reference kind"), "{errs:?}");
        let errs = sub("${env:PG_PASSWORD").unwrap_err();
        assert!(errs[0].contains("no closing"), "{errs:?}");
        let errs = sub("${env:1BAD}").unwrap_err();
        assert!(
            errs[0].contains("not a valid environment variable name"),
            "{errs:?}"
        );
        // Two bad references in one string: both reported.
        assert_eq!(sub("${env:A1}${env:B1}").unwrap_err().len(), 2);
    }

    #[test]
    fn whole_plain_reference_takes_the_type_of_its_value() {
        let mut root = yaml::parse("server_id: ${env:SERVER_ID}\npw: \"${env:SERVER_ID}\"\n")
            .unwrap()
            .unwrap();
        let (resolved, errors) = resolve(&mut root, Path::new("/"), &lookup());
        assert!(errors.is_empty());
        assert_eq!(resolved.len(), 2);
        assert_eq!(
            root.to_json(),
            serde_json::json!({"server_id": 5401, "pw": "5401"})
        );
    }

    #[test]
    fn errors_carry_path_and_mark() {
        let mut root = yaml::parse("source:\n  password: ${env:NOPE}\n")
            .unwrap()
            .unwrap();
        let (_, errors) = resolve(&mut root, Path::new("/"), &lookup());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path.to_string(), "source.password");
        assert_eq!(
            errors[0].mark,
            Mark {
                line: 2,
                column: 13
            }
        );
    }
}
