//! Located problems found in pipeline files, and the YAML paths that locate them.

use std::fmt;
use std::path::{Path, PathBuf};

use super::yaml::Mark;

/// A path inside a YAML document, written the way users read it:
/// `source.tables[1].partition_by`, or `kafka.properties["linger.ms"]` for keys
/// that are not plain words.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YamlPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

impl YamlPath {
    pub fn root() -> Self {
        YamlPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_string()));
        YamlPath(segments)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        YamlPath(segments)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if is_word(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Key(k) => write!(f, "[{k:?}]")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

fn is_word(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub mark: Mark,
    pub path: YamlPath,
    pub message: String,
}

impl Diagnostic {
    pub fn error(file: &Path, mark: Mark, path: YamlPath, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_path_buf(),
            mark,
            path,
            message: message.into(),
        }
    }

    pub fn warning(file: &Path, mark: Mark, path: YamlPath, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, mark, path, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}: {level}: ", self.file.display(), self.mark)?;
        if !self.path.is_root() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_yaml() {
        let p = YamlPath::root()
            .key("source")
            .key("tables")
            .index(1)
            .key("partition_by");
        assert_eq!(p.to_string(), "source.tables[1].partition_by");
        let q = YamlPath::root()
            .key("kafka")
            .key("properties")
            .key("linger.ms");
        assert_eq!(q.to_string(), "kafka.properties[\"linger.ms\"]");
    }

    #[test]
    fn diagnostic_names_file_line_column_and_path() {
        let d = Diagnostic::error(
            Path::new("pipelines/shop.yaml"),
            Mark { line: 7, column: 5 },
            YamlPath::root().key("lake").key("uri"),
            "not a valid URI",
        );
        assert_eq!(
            d.to_string(),
            "pipelines/shop.yaml:7:5: error: lake.uri: not a valid URI"
        );
    }
}
