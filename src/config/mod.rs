//! Pipeline files: discovery, reading, `${..}` references, validation.
//!
//! A file goes through four stages, and every stage reports all of its
//! problems before the next one runs:
//!
//! ```text
//! text ──yaml::parse──> located tree ──secrets::resolve──> tree with values
//!      ──schema::validate──> shape is right ──serde──> PipelineConfig
//!      ──validate::Checker──> meaning is right (names, URLs, duplicates)
//! ```
//!
//! Each problem is a [`Diagnostic`] with file, line:column and YAML path. The
//! config is parsed, then validated without I/O (apart from local files it
//! names), then built into running components elsewhere.

pub mod diagnostic;
pub mod model;
pub mod reference;
pub mod schema;
pub mod secrets;
pub mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, Severity, YamlPath};
pub use model::PipelineConfig;

use secrets::Lookup;
use yaml::{Mark, Node};

/// A pipeline file that passed every check.
#[derive(Debug, Clone)]
pub struct LoadedPipeline {
    pub file: PathBuf,
    pub config: PipelineConfig,
}

/// What loading a set of files produced: the valid pipelines and every
/// diagnostic (errors and warnings) of all files.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub pipelines: Vec<LoadedPipeline>,
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadReport {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// The pipeline files named by `paths`: files as given, directories expanded
/// to their `*.yaml` / `*.yml` files (not recursively), sorted.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<Diagnostic>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let at =
            |message: String| Diagnostic::error(path, Mark::default(), YamlPath::root(), message);
        match std::fs::metadata(path) {
            Err(e) => errors.push(at(format!("cannot read: {e}"))),
            Ok(meta) if meta.is_dir() => match std::fs::read_dir(path) {
                Err(e) => errors.push(at(format!("cannot list directory: {e}"))),
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| {
                            p.is_file()
                                && matches!(
                                    p.extension().and_then(|e| e.to_str()),
                                    Some("yaml" | "yml")
                                )
                        })
                        .collect();
                    found.sort();
                    if found.is_empty() {
                        errors.push(at("directory holds no .yaml or .yml pipeline files".into()));
                    }
                    files.extend(found);
                }
            },
            Ok(_) => files.push(path.clone()),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// One file, parsed and checked on its own.
struct FileResult {
    file: PathBuf,
    root: Option<Node>,
    config: Option<PipelineConfig>,
    diagnostics: Vec<Diagnostic>,
}

fn load_one(file: &Path, lookup: &dyn Lookup) -> FileResult {
    let mut result = FileResult {
        file: file.to_path_buf(),
        root: None,
        config: None,
        diagnostics: Vec::new(),
    };
    let error =
        |mark: Mark, path: YamlPath, message: String| Diagnostic::error(file, mark, path, message);
    let text = match std::fs::read(file) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                result.diagnostics.push(error(
                    Mark::default(),
                    YamlPath::root(),
                    format!("the file is not UTF-8 (invalid byte at offset {offset})"),
                ));
                return result;
            }
        },
        Err(e) => {
            result.diagnostics.push(error(
                Mark::default(),
                YamlPath::root(),
                format!("cannot read: {e}"),
            ));
            return result;
        }
    };
    let mut root = match yaml::parse(&text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            result.diagnostics.push(error(
                Mark { line: 1, column: 1 },
                YamlPath::root(),
                "the file is empty; expected a pipeline (name, source, kafka, lake)".into(),
            ));
            return result;
        }
        Err(errors) => {
            result.diagnostics.extend(
                errors
                    .into_iter()
                    .map(|e| error(e.mark, YamlPath::root(), e.message)),
            );
            return result;
        }
    };
    let base_dir = file.parent().unwrap_or(Path::new("."));
    let (resolved, reference_errors) = secrets::resolve(&mut root, base_dir, lookup);
    result.diagnostics.extend(
        reference_errors
            .into_iter()
            .map(|e| error(e.mark, e.path, e.message)),
    );
    let violations = schema::validate(&schema::pipeline_schema(), &root);
    let shape_ok = violations.is_empty();
    result.diagnostics.extend(
        violations
            .into_iter()
            .map(|v| error(v.mark, v.path, v.message)),
    );
    if shape_ok {
        match serde_json::from_value::<PipelineConfig>(root.to_json()) {
            Ok(config) => {
                let mut checker = validate::Checker {
                    file,
                    root: &root,
                    resolved: &resolved,
                    out: Vec::new(),
                };
                checker.check(&config);
                result.diagnostics.extend(checker.out);
                result.config = Some(config);
            }
            // The schema check should have caught anything serde refuses; if
            // not, still say so rather than accept the file.
            Err(e) => result.diagnostics.push(error(
                root.mark,
                YamlPath::root(),
                format!("the pipeline does not match the expected shape: {e}"),
            )),
        }
    }
    result.root = Some(root);
    result
}

/// Loads and checks every pipeline file under `paths`, with references looked
/// up in `lookup`. Pipelines with errors are not returned.
pub fn load_with(paths: &[PathBuf], lookup: &dyn Lookup) -> LoadReport {
    let mut report = LoadReport::default();
    let files = match discover(paths) {
        Ok(files) => files,
        Err(errors) => {
            report.diagnostics = errors;
            return report;
        }
    };
    let results: Vec<FileResult> = files.iter().map(|f| load_one(f, lookup)).collect();
    let valid: Vec<(&Path, &Node, &PipelineConfig)> = results
        .iter()
        .filter_map(|r| Some((r.file.as_path(), r.root.as_ref()?, r.config.as_ref()?)))
        .collect();
    let across = validate::check_across(&valid);
    for result in &results {
        report
            .diagnostics
            .extend(result.diagnostics.iter().cloned());
    }
    report.diagnostics.extend(across);
    for result in results {
        let file_has_errors = report
            .diagnostics
            .iter()
            .any(|d| d.is_error() && d.file == result.file);
        if let (Some(config), false) = (result.config, file_has_errors) {
            report.pipelines.push(LoadedPipeline {
                file: result.file,
                config,
            });
        }
    }
    report
}

/// [`load_with`] against the process environment and file system.
pub fn load(paths: &[PathBuf]) -> LoadReport {
    load_with(paths, &secrets::SystemLookup)
}

#[cfg(test)]
mod tests;
