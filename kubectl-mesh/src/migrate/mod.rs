//! `kubectl mesh migrate`: upgrades workload and Ingress manifests that Kubernetes 1.16+ rejects.
//!
//! Plain YAML is parsed and rewritten document by document (documents that need no change are
//! copied byte for byte). Helm templates (files containing `{{`) are not YAML, so they get a
//! conservative line-based transform that never touches a `{{ ... }}` expression and refuses
//! what it cannot rewrite safely.
//!
//! Layout: this file holds the types, the per-file driver ([`migrate_text`]) and the command
//! ([`run`]); `yaml` is the plain-YAML path, `template` and `lines` the Helm-template path,
//! `files` finds inputs (recursively, charts by their templates) and writes them, `diff` prints
//! `--check`'s unified diff.

mod diff;
mod files;
mod lines;
mod template;
mod yaml;

pub use files::{read_sources, write_all, Folder, Input, Source, MANIFEST_EXTENSIONS};

use serde_yaml_ng::Value;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;

/// apiVersions of Deployment/DaemonSet/ReplicaSet/StatefulSet that 1.16 stopped serving.
pub const OLD_WORKLOAD_VERSIONS: &[&str] = &["extensions/v1beta1", "apps/v1beta1", "apps/v1beta2"];
/// The workload kinds migrated to `apps/v1`.
pub const WORKLOAD_KINDS: &[&str] = &["Deployment", "DaemonSet", "ReplicaSet", "StatefulSet"];
/// Ingress apiVersions migrated to `networking.k8s.io/v1`.
pub const OLD_INGRESS_VERSIONS: &[&str] = &["extensions/v1beta1", "networking.k8s.io/v1beta1"];
/// The workloads' new apiVersion.
pub const WORKLOAD_VERSION: &str = "apps/v1";
/// The Ingress's new apiVersion.
pub const INGRESS_VERSION: &str = "networking.k8s.io/v1";
/// The pathType added to paths that had none.
pub const PATH_TYPE: &str = "ImplementationSpecific";
/// Comment written above every added `pathType`.
pub const PATH_TYPE_COMMENT: &str =
    "# ImplementationSpecific keeps the old v1beta1 semantics: the ingress controller decides how the path matches";

/// Why a migration failed. Every message names the file, the object and the fix.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// An input could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file or directory.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An output could not be written; no input file was changed.
    #[error("cannot write {file}: {source}; no file was changed")]
    Write {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A document is not valid YAML.
    #[error("{file}: document {doc} is not valid YAML: {message}")]
    Parse {
        /// The file.
        file: String,
        /// 1-based document number.
        doc: usize,
        /// The parser's message.
        message: String,
    },
    /// An object cannot be migrated as it is.
    #[error("{file}: {object}: {message}\n  fix: {fix}")]
    Object {
        /// The file.
        file: String,
        /// `Kind/name`.
        object: String,
        /// What is wrong.
        message: String,
        /// What to do.
        fix: String,
    },
    /// A Helm template uses a construct the line-based transform cannot rewrite safely.
    #[error("{file}:{line}: {object}: cannot migrate this Helm template safely: {construct}\n  fix: {fix}")]
    Template {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// `Kind/name`.
        object: String,
        /// The construct and why it is refused.
        construct: String,
        /// What to do.
        fix: String,
    },
    /// A flag combination that cannot work.
    #[error("{0}")]
    Usage(String),
}

/// What changed in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `Kind/name`.
    pub object: String,
    /// Old apiVersion.
    pub from: String,
    /// New apiVersion.
    pub to: String,
    /// Further changes, e.g. `added spec.selector.matchLabels {app: web}`.
    pub notes: Vec<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} -> {}", self.object, self.from, self.to)?;
        for n in &self.notes {
            write!(f, ", {n}")?;
        }
        Ok(())
    }
}

/// The result of migrating one file's text.
#[derive(Debug, Clone)]
pub struct Migrated {
    /// The new text (equal to the input when nothing changed).
    pub text: String,
    /// One entry per changed object.
    pub changes: Vec<Change>,
    /// Objects left alone that Kubernetes 1.16+ will still reject.
    pub warnings: Vec<String>,
    /// Whether the input was a Helm template (handled line by line).
    pub template: bool,
    /// The migrated objects as JSON (plain YAML only; empty for templates).
    pub objects: Vec<serde_json::Value>,
    /// `apiVersion kind` of every document as read (before migrating), for the explanation
    /// when nothing needed migrating.
    pub found: Vec<String>,
}

/// Whether `text` is a Helm template rather than plain YAML.
pub fn is_template(text: &str) -> bool {
    text.contains("{{")
}

/// One `---`-separated document: its separator line (if any) and its body, both verbatim.
struct Chunk<'a> {
    sep: &'a str,
    body: &'a str,
    first_line: usize,
}

fn is_separator(line: &str) -> bool {
    let l = line.trim_end();
    l == "---" || (l.starts_with("--- #") || l.starts_with("---\t#"))
}

fn split_docs(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut sep = "";
    let mut start = 0;
    let mut first_line = 1;
    let mut pos = 0;
    for (line_no, line) in (1..).zip(text.split_inclusive('\n')) {
        if is_separator(line) {
            chunks.push(Chunk {
                sep,
                body: &text[start..pos],
                first_line,
            });
            sep = &text[pos..pos + line.len()];
            start = pos + line.len();
            first_line = line_no + 1;
        }
        pos += line.len();
    }
    chunks.push(Chunk {
        sep,
        body: &text[start..],
        first_line,
    });
    chunks
}

/// Migrates the text of one file; `file` is only used in messages.
pub fn migrate_text(file: &str, text: &str) -> Result<Migrated, MigrateError> {
    migrate_as(file, text, is_template(text))
}

/// Migrates `text` with the line-based Helm template transform even if it has no `{{`.
pub fn migrate_template(file: &str, text: &str) -> Result<Migrated, MigrateError> {
    migrate_as(file, text, true)
}

fn migrate_as(file: &str, text: &str, template: bool) -> Result<Migrated, MigrateError> {
    let mut out = String::with_capacity(text.len() + 256);
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    let mut objects = Vec::new();
    let mut found = Vec::new();
    for (i, chunk) in split_docs(text).iter().enumerate() {
        out.push_str(chunk.sep);
        let doc = i + 1;
        if template {
            found.extend(template::kind_of(chunk.body));
            let (body, change) = template::migrate_template_doc(file, chunk, doc, &mut warnings)?;
            out.push_str(&body);
            changes.extend(change);
            continue;
        }
        let mut value: Value =
            serde_yaml_ng::from_str(chunk.body).map_err(|e| MigrateError::Parse {
                file: file.to_owned(),
                doc,
                message: e.to_string(),
            })?;
        if value.is_null() {
            out.push_str(chunk.body);
            continue;
        }
        found.push(yaml::kind_of(&value));
        match yaml::migrate_value(file, doc, &mut value, &mut warnings)? {
            Some(change) => {
                // Keep the document's leading comments; the rest is re-serialized.
                let lead: String = chunk
                    .body
                    .split_inclusive('\n')
                    .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
                    .collect();
                out.push_str(&lead);
                let yaml = serde_yaml_ng::to_string(&value).map_err(|e| MigrateError::Parse {
                    file: file.to_owned(),
                    doc,
                    message: e.to_string(),
                })?;
                out.push_str(&yaml::comment_path_types(&yaml));
                changes.push(change);
            }
            None => out.push_str(chunk.body),
        }
        objects.push(
            serde_json::to_value(&value).map_err(|e| MigrateError::Parse {
                file: file.to_owned(),
                doc,
                message: e.to_string(),
            })?,
        );
    }
    Ok(Migrated {
        text: out,
        changes,
        warnings,
        template,
        objects,
        found,
    })
}

fn old_unknown_warning(object: &str, api_version: &str) -> String {
    format!("{object}: {api_version} is not served by Kubernetes 1.16+, and migrate only handles Deployment, DaemonSet, ReplicaSet, StatefulSet and Ingress; left unchanged")
}

/// The summary lines for an Ingress rewrite, shared by the YAML and the Helm-template paths so
/// both report a change the same way.
fn ingress_notes(backends: usize, path_types: usize, paths_added: usize) -> Vec<String> {
    let mut notes = Vec::new();
    if backends > 0 {
        notes.push(format!(
            "rewrote {backends} backend(s) to service.name/service.port"
        ));
    }
    if path_types > 0 {
        notes.push(format!(
            "added pathType: {PATH_TYPE} to {path_types} path(s)"
        ));
    }
    if paths_added > 0 {
        notes.push(format!("added path: / to {paths_added} path(s)"));
    }
    notes
}

/// Options of `kubectl mesh migrate`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-f` arguments: files, folders (walked recursively) or `-`; empty: stdin.
    pub files: Vec<PathBuf>,
    /// Rewrite the changed files (all or nothing) instead of printing.
    pub in_place: bool,
    /// Print a unified diff of what would change and write nothing.
    pub check: bool,
    /// `-o json`: print the objects as a `v1` `List`.
    pub json: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Printed or written; or `--check` found nothing to change.
    Done,
    /// `--check` found files that need migrating (the command exits 1).
    NeedsMigration,
}

/// One migrated input and the index of the `-f` argument it came from.
struct Outcome<'a> {
    source: usize,
    input: &'a Input,
    file: String,
    migrated: Migrated,
}

/// Runs `kubectl mesh migrate`: migrates every input, then prints the result, the diff
/// (`check`) or writes the files (`in_place`, only once every input has migrated); the summary
/// (one line per changed object, warnings, why nothing changed) goes to `summary`.
pub fn run(
    opts: &Options,
    out: &mut impl Write,
    summary: &mut impl Write,
) -> Result<Status, MigrateError> {
    let usage = |m: &str| Err(MigrateError::Usage(m.to_owned()));
    if opts.in_place && opts.json {
        return usage("--in-place keeps each file's format; drop -o json");
    }
    if opts.check && (opts.in_place || opts.json) {
        return usage("--check only prints a diff and writes nothing; drop --in-place and -o json");
    }
    let sources = read_sources(&opts.files)?;
    let stdin = |i: &Input| i.path.as_os_str() == "-";
    if opts.in_place && sources.iter().flat_map(|s| &s.inputs).any(stdin) {
        return usage("--in-place needs files: pass -f FILE or -f DIR");
    }
    // Everything is computed before anything is written or printed.
    let mut results = Vec::new();
    for (source, s) in sources.iter().enumerate() {
        for input in &s.inputs {
            let file = match stdin(input) {
                true => "(stdin)".to_owned(),
                false => input.path.display().to_string(),
            };
            let migrated = migrate_text(&file, &input.text)?;
            if opts.json && migrated.template {
                return Err(MigrateError::Usage(format!(
                    "{file} is a Helm template (it contains `{{{{`), not YAML: -o json cannot print it; use -o yaml or --in-place"
                )));
            }
            results.push(Outcome {
                source,
                input,
                file,
                migrated,
            });
        }
    }
    let mut total = 0;
    for r in &results {
        for c in &r.migrated.changes {
            let _ = writeln!(summary, "{}: {c}", r.file);
            total += 1;
        }
        for w in &r.migrated.warnings {
            let _ = writeln!(summary, "{}: warning: {w}", r.file);
        }
    }
    for (i, s) in sources.iter().enumerate() {
        let mine: Vec<&Migrated> = results
            .iter()
            .filter(|r| r.source == i)
            .map(|r| &r.migrated)
            .collect();
        if let Some(why) = nothing_to_migrate(s, &mine) {
            let _ = writeln!(summary, "{why}");
        }
    }
    let changed: Vec<&Outcome<'_>> = results
        .iter()
        .filter(|r| !r.migrated.changes.is_empty())
        .collect();
    let counts = format!("{} of {} file(s)", changed.len(), results.len());
    if opts.check {
        for r in &changed {
            let _ = write!(
                out,
                "{}",
                diff::unified(&r.file, &r.input.text, &r.migrated.text)
            );
        }
        if changed.is_empty() {
            let _ = writeln!(
                summary,
                "check: nothing needs migrating in {} file(s)",
                results.len()
            );
            return Ok(Status::Done);
        }
        let _ = writeln!(
            summary,
            "check: {total} object(s) in {counts} need migrating; run without --check to print the result or with --in-place to write it"
        );
        return Ok(Status::NeedsMigration);
    }
    if opts.in_place {
        write_all(
            changed
                .iter()
                .map(|r| (r.input.path.as_path(), r.migrated.text.as_str())),
        )?;
        let _ = writeln!(summary, "migrated {total} object(s); rewrote {counts}");
        return Ok(Status::Done);
    }
    if opts.json {
        let items: Vec<serde_json::Value> = results
            .iter()
            .flat_map(|r| r.migrated.objects.iter().cloned())
            .collect();
        let _ = writeln!(out, "{}", crate::render::to_json(&items));
    } else {
        let many = results.len() > 1;
        for r in &results {
            let text = &r.migrated.text;
            if many {
                let _ = writeln!(out, "---\n# Source: {}", r.file);
            }
            let _ = write!(out, "{text}");
            if many && !text.ends_with('\n') {
                let _ = writeln!(out);
            }
        }
    }
    let _ = writeln!(summary, "migrated {total} object(s) in {counts}");
    Ok(Status::Done)
}

/// Why an `-f` argument had nothing to migrate (`None` when something changed): no manifest
/// files found where it pointed, or what its objects are instead.
fn nothing_to_migrate(source: &Source, results: &[&Migrated]) -> Option<String> {
    if results.iter().any(|m| !m.changes.is_empty()) {
        return None;
    }
    let name = match source.arg.as_os_str() == "-" {
        true => "(stdin)".to_owned(),
        false => source.arg.display().to_string(),
    };
    let mut why = if results.is_empty() {
        let mut why = format!("{name}: nothing to migrate: no .yaml, .yml or .json file below it");
        if let Some(f) = &source.folder {
            for c in &f.charts_without_templates {
                why.push_str(&format!(
                    "; {} is a Helm chart without a templates/ folder",
                    c.display()
                ));
            }
            if f.chart_files_skipped > 0 {
                why.push_str(&format!(
                    "; {} chart file(s) such as Chart.yaml and values.yaml are not manifests",
                    f.chart_files_skipped
                ));
            }
            if f.other_files_skipped > 0 {
                why.push_str(&format!(
                    "; {} file(s) of other types skipped",
                    f.other_files_skipped
                ));
            }
        }
        why
    } else {
        format!(
            "{name}: nothing to migrate: its {} file(s) hold no {} or Ingress in an apiVersion that Kubernetes 1.16 removed",
            results.len(),
            WORKLOAD_KINDS.join(", ")
        )
    };
    let mut found: Vec<&str> = results
        .iter()
        .flat_map(|m| m.found.iter().map(String::as_str))
        .collect();
    found.sort_unstable();
    if found.is_empty() {
        if !results.is_empty() {
            why.push_str(" (they hold no Kubernetes object)");
        }
    } else {
        let mut counted: Vec<String> = Vec::new();
        for group in found.chunk_by(|a, b| a == b) {
            counted.push(format!("{} {}", group.len(), group[0]));
        }
        why.push_str(&format!(" (found: {})", counted.join(", ")));
    }
    Some(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_separators_and_text() {
        let text = "a: 1\n---\nb: 2\n--- # c\nc: 3";
        let chunks = split_docs(text);
        assert_eq!(chunks.len(), 3);
        let joined: String = chunks
            .iter()
            .map(|c| format!("{}{}", c.sep, c.body))
            .collect();
        assert_eq!(joined, text);
        assert_eq!(chunks[2].first_line, 5);
    }
}
