//! `kubectl mesh migrate`: upgrades workload and Ingress manifests that Kubernetes 1.16+ rejects.
//!
//! Plain YAML is parsed and rewritten document by document (documents that need no change are
//! copied byte for byte). Helm templates (files containing `{{`) are not YAML, so they get a
//! conservative line-based transform that never touches a `{{ ... }}` expression and refuses
//! what it cannot rewrite safely.

use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

fn object_name(v: &Value, doc: usize) -> String {
    let kind = str_at(v, &["kind"]).unwrap_or("object");
    match str_at(v, &["metadata", "name"]) {
        Some(n) => format!("{kind}/{n}"),
        None => format!("{kind}/(document {doc})"),
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

fn flow_labels(m: &Mapping) -> String {
    let pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{}: {}", scalar_text(k), scalar_text(v)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
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
    for (i, chunk) in split_docs(text).iter().enumerate() {
        out.push_str(chunk.sep);
        let doc = i + 1;
        if template {
            let (body, change) = migrate_template_doc(file, chunk, doc, &mut warnings)?;
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
        match migrate_value(file, doc, &mut value, &mut warnings)? {
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
                out.push_str(&comment_path_types(&yaml));
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
    })
}

/// Puts [`PATH_TYPE_COMMENT`] above each `pathType: ImplementationSpecific` line.
fn comment_path_types(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.split_inclusive('\n') {
        let content = line.trim_start().trim_start_matches("- ").trim_end();
        if content == format!("pathType: {PATH_TYPE}") {
            let indent = line.len() - line.trim_start().len();
            out.push_str(&" ".repeat(indent));
            out.push_str(PATH_TYPE_COMMENT);
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

fn old_unknown_warning(object: &str, api_version: &str) -> String {
    format!("{object}: {api_version} is not served by Kubernetes 1.16+, and migrate only handles Deployment, DaemonSet, ReplicaSet, StatefulSet and Ingress; left unchanged")
}

fn migrate_value(
    file: &str,
    doc: usize,
    v: &mut Value,
    warnings: &mut Vec<String>,
) -> Result<Option<Change>, MigrateError> {
    let api_version = str_at(v, &["apiVersion"]).unwrap_or_default().to_owned();
    let kind = str_at(v, &["kind"]).unwrap_or_default().to_owned();
    let object = object_name(v, doc);
    let err = |message: String, fix: &str| MigrateError::Object {
        file: file.to_owned(),
        object: object.clone(),
        message,
        fix: fix.to_owned(),
    };
    if WORKLOAD_KINDS.contains(&kind.as_str())
        && OLD_WORKLOAD_VERSIONS.contains(&api_version.as_str())
    {
        let mut notes = Vec::new();
        let labels = v
            .get("spec")
            .and_then(|s| s.get("template"))
            .and_then(|t| t.get("metadata"))
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let Some(spec) = v.get_mut("spec").and_then(Value::as_mapping_mut) else {
            return Err(err(
                "has no spec".into(),
                "add the spec (with spec.template) before migrating",
            ));
        };
        let selector = spec.get("selector");
        let has_selector = selector.is_some_and(|s| {
            s.get("matchLabels")
                .and_then(Value::as_mapping)
                .is_some_and(|m| !m.is_empty())
                || s.get("matchExpressions")
                    .and_then(Value::as_sequence)
                    .is_some_and(|m| !m.is_empty())
        });
        if !has_selector {
            if labels.is_empty() {
                return Err(err(
                    format!("apps/v1 requires spec.selector, and spec.template.metadata.labels is empty, so there is nothing to select the pods by (was {api_version}, which defaulted the selector to those labels)"),
                    "add labels to spec.template.metadata.labels (e.g. app: NAME) or write spec.selector.matchLabels yourself, then rerun",
                ));
            }
            let mut sel = Mapping::new();
            sel.insert("matchLabels".into(), Value::Mapping(labels.clone()));
            // The selector goes first in spec, where the template transform puts it too.
            let mut new_spec = Mapping::new();
            new_spec.insert("selector".into(), Value::Mapping(sel));
            for (k, val) in std::mem::take(spec) {
                if k.as_str() != Some("selector") {
                    new_spec.insert(k, val);
                }
            }
            *spec = new_spec;
            notes.push(format!(
                "added spec.selector.matchLabels {}",
                flow_labels(&labels)
            ));
        }
        v["apiVersion"] = WORKLOAD_VERSION.into();
        return Ok(Some(Change {
            object,
            from: api_version,
            to: WORKLOAD_VERSION.into(),
            notes,
        }));
    }
    if kind == "Ingress" && OLD_INGRESS_VERSIONS.contains(&api_version.as_str()) {
        let mut backends = 0usize;
        let mut path_types = 0usize;
        let mut paths_added = 0usize;
        let mut notes = Vec::new();
        if let Some(spec) = v.get_mut("spec").and_then(Value::as_mapping_mut) {
            if let Some(b) = spec.get("backend").cloned() {
                let converted = convert_backend(&b).map_err(|m| {
                    err(
                        format!("spec.backend: {m}"),
                        "write spec.defaultBackend (networking.k8s.io/v1) yourself",
                    )
                })?;
                let mut new_spec = Mapping::new();
                for (k, val) in std::mem::take(spec) {
                    if k.as_str() == Some("backend") {
                        new_spec.insert("defaultBackend".into(), converted.clone());
                    } else {
                        new_spec.insert(k, val);
                    }
                }
                *spec = new_spec;
                backends += 1;
                notes.push("renamed spec.backend to spec.defaultBackend".to_owned());
            }
            let rules = spec
                .get_mut("rules")
                .and_then(Value::as_sequence_mut)
                .map(|r| r.iter_mut())
                .into_iter()
                .flatten();
            for (ri, rule) in rules.enumerate() {
                let paths = rule
                    .get_mut("http")
                    .and_then(|h| h.get_mut("paths"))
                    .and_then(Value::as_sequence_mut)
                    .map(|p| p.iter_mut())
                    .into_iter()
                    .flatten();
                for (pi, path) in paths.enumerate() {
                    let Some(p) = path.as_mapping_mut() else {
                        continue;
                    };
                    let mut new = Mapping::new();
                    match p.get("path") {
                        Some(existing) => {
                            new.insert("path".into(), existing.clone());
                        }
                        None => {
                            new.insert("path".into(), "/".into());
                            paths_added += 1;
                        }
                    }
                    match p.get("pathType") {
                        Some(existing) => {
                            new.insert("pathType".into(), existing.clone());
                        }
                        None => {
                            new.insert("pathType".into(), PATH_TYPE.into());
                            path_types += 1;
                        }
                    }
                    for (k, val) in std::mem::take(p) {
                        match k.as_str() {
                            Some("path" | "pathType") => {}
                            Some("backend") => {
                                let converted = convert_backend(&val).map_err(|m| {
                                    err(
                                        format!("spec.rules[{ri}].http.paths[{pi}].backend: {m}"),
                                        "write the backend as service.name and service.port.number or .name yourself",
                                    )
                                })?;
                                if converted != val {
                                    backends += 1;
                                }
                                new.insert(k, converted);
                            }
                            _ => {
                                new.insert(k, val);
                            }
                        }
                    }
                    *p = new;
                }
            }
        }
        notes.extend(ingress_notes(backends, path_types, paths_added));
        v["apiVersion"] = INGRESS_VERSION.into();
        return Ok(Some(Change {
            object,
            from: api_version,
            to: INGRESS_VERSION.into(),
            notes,
        }));
    }
    if OLD_WORKLOAD_VERSIONS.contains(&api_version.as_str()) {
        warnings.push(old_unknown_warning(&object, &api_version));
    }
    Ok(None)
}

/// `{serviceName, servicePort}` -> `{service: {name, port: {number | name}}}`.
fn convert_backend(b: &Value) -> Result<Value, String> {
    let Some(m) = b.as_mapping() else {
        return Err("is not a mapping".into());
    };
    if m.contains_key("service") || (m.contains_key("resource") && !m.contains_key("serviceName")) {
        return Ok(b.clone());
    }
    if let Some(k) = m
        .keys()
        .find(|k| !matches!(k.as_str(), Some("serviceName" | "servicePort")))
    {
        return Err(format!("unexpected field `{}`", scalar_text(k)));
    }
    let name = m
        .get("serviceName")
        .and_then(Value::as_str)
        .ok_or("serviceName is missing")?;
    let port = match m.get("servicePort") {
        Some(Value::Number(n)) => port_value(&n.to_string()),
        Some(Value::String(s)) => port_value(s),
        _ => return Err("servicePort is missing".into()),
    };
    let mut service = Mapping::new();
    service.insert("name".into(), name.into());
    service.insert("port".into(), port);
    let mut out = Mapping::new();
    out.insert("service".into(), Value::Mapping(service));
    Ok(Value::Mapping(out))
}

/// A port given as digits is a number (`"8080"` included); anything else a port name.
fn port_value(text: &str) -> Value {
    let mut port = Mapping::new();
    match text.parse::<u64>() {
        Ok(n) => port.insert("number".into(), n.into()),
        Err(_) => port.insert("name".into(), text.into()),
    };
    Value::Mapping(port)
}

// ---- Helm templates: line-based ------------------------------------------------------------

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// A line that is only a template action, e.g. `{{- if .Values.x }}`.
fn is_directive(line: &str) -> bool {
    let t = line.trim();
    t.starts_with("{{") && t.ends_with("}}")
}

/// Blank, comment or directive: no YAML structure of its own.
fn is_transparent(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#') || is_directive(line)
}

/// A directive that only steers control flow (cannot produce YAML keys).
fn is_control(line: &str) -> bool {
    let t = line
        .trim()
        .trim_start_matches("{{")
        .trim_start_matches('-')
        .trim_start();
    [
        "if ", "else", "end", "range ", "with ", "/*", "define ", "$",
    ]
    .iter()
    .any(|k| t.starts_with(k))
}

/// `key: rest` of a line (after an optional `- `); `rest` is trimmed.
fn key_of(line: &str) -> Option<(&str, &str)> {
    let t = line.trim_start();
    let t = t.strip_prefix("- ").map_or(t, str::trim_start);
    if t.starts_with('#') || t.starts_with("{{") {
        return None;
    }
    let (k, rest) = if let Some(k) = t.strip_suffix(':') {
        (k, "")
    } else {
        let idx = t.find(": ")?;
        (&t[..idx], t[idx + 1..].trim())
    };
    let k = k.trim().trim_matches('"').trim_matches('\'');
    let rest = strip_comment(rest);
    Some((k, rest))
}

fn strip_comment(rest: &str) -> &str {
    match rest.find(" #") {
        Some(i) if !rest.starts_with('"') && !rest.starts_with('\'') => rest[..i].trim_end(),
        _ => rest,
    }
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// Column where a line's key starts (after `- ` for list items).
fn key_column(line: &str) -> usize {
    let ind = indent_of(line);
    let t = &line[ind..];
    match t.strip_prefix('-') {
        Some(rest) if rest.starts_with(' ') => ind + 1 + (rest.len() - rest.trim_start().len()),
        _ => ind,
    }
}

/// End (exclusive) of the block opened by line `start` whose key sits at column `col`.
/// Trailing blank, comment and directive lines are not part of the block.
fn block_end(lines: &[&str], start: usize, col: usize) -> usize {
    let mut end = (start + 1..lines.len())
        .find(|&i| !is_transparent(lines[i]) && indent_of(lines[i]) <= col)
        .unwrap_or(lines.len());
    while end > start + 1 && is_transparent(lines[end - 1]) {
        end -= 1;
    }
    end
}

/// Child lines with `key` directly under the block `(start, end)`.
fn children(lines: &[&str], start: usize, end: usize, key: &str) -> Vec<usize> {
    let Some(ci) = (start + 1..end)
        .find(|&i| !is_transparent(lines[i]))
        .map(|i| indent_of(lines[i]))
    else {
        return Vec::new();
    };
    (start + 1..end)
        .filter(|&i| {
            !is_transparent(lines[i])
                && indent_of(lines[i]) == ci
                && !lines[i].trim_start().starts_with("- ")
                && key_of(lines[i]).is_some_and(|(k, _)| k == key)
        })
        .collect()
}

struct TemplateDoc<'a> {
    file: &'a str,
    first_line: usize,
    object: String,
    lines: Vec<&'a str>,
    /// Replacement for a line (empty: deleted).
    replace: BTreeMap<usize, Vec<String>>,
    /// Lines inserted after a line.
    after: BTreeMap<usize, Vec<String>>,
}

impl TemplateDoc<'_> {
    fn refuse(&self, idx: usize, construct: String, fix: &str) -> MigrateError {
        MigrateError::Template {
            file: self.file.to_owned(),
            line: self.first_line + idx,
            object: self.object.clone(),
            construct,
            fix: fix.to_owned(),
        }
    }

    fn top(&self, key: &str) -> Vec<usize> {
        (0..self.lines.len())
            .filter(|&i| {
                indent_of(self.lines[i]) == 0
                    && !is_transparent(self.lines[i])
                    && key_of(self.lines[i]).is_some_and(|(k, _)| k == key)
            })
            .collect()
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            match self.replace.get(&i) {
                Some(new) => {
                    for l in new {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            for l in self.after.get(&i).into_iter().flatten() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

const TEMPLATE_FIX: &str = "migrate this object by hand (or render the chart with `helm template` and migrate the output), then rerun for the rest";

fn migrate_template_doc(
    file: &str,
    chunk: &Chunk<'_>,
    doc: usize,
    warnings: &mut Vec<String>,
) -> Result<(String, Option<Change>), MigrateError> {
    let body = chunk.body;
    let unchanged = Ok((body.to_owned(), None));
    let trailing_newline = body.ends_with('\n');
    let lines: Vec<&str> = body.lines().collect();
    let mut d = TemplateDoc {
        file,
        first_line: chunk.first_line,
        object: String::new(),
        lines,
        replace: BTreeMap::new(),
        after: BTreeMap::new(),
    };
    let value_of = |d: &TemplateDoc<'_>, i: usize| -> String {
        key_of(d.lines[i])
            .map(|(_, r)| unquote(r).to_owned())
            .unwrap_or_default()
    };
    let kinds = d.top("kind");
    let versions = d.top("apiVersion");
    let kind = kinds.first().map(|&i| value_of(&d, i)).unwrap_or_default();
    let name = d
        .top("metadata")
        .first()
        .and_then(|&m| {
            let end = block_end(&d.lines, m, 0);
            children(&d.lines, m, end, "name")
                .first()
                .map(|&i| value_of(&d, i))
        })
        .unwrap_or_else(|| format!("(document {doc})"));
    d.object = format!("{}/{name}", if kind.is_empty() { "object" } else { &kind });
    let version_values: Vec<String> = versions.iter().map(|&i| value_of(&d, i)).collect();
    let is_old = |v: &str| OLD_WORKLOAD_VERSIONS.contains(&v) || OLD_INGRESS_VERSIONS.contains(&v);
    let workload = WORKLOAD_KINDS.contains(&kind.as_str());
    let ingress = kind == "Ingress";
    let wanted = |v: &str| {
        (workload && OLD_WORKLOAD_VERSIONS.contains(&v))
            || (ingress && OLD_INGRESS_VERSIONS.contains(&v))
    };
    if !version_values.iter().any(|v| wanted(v)) {
        if kind.contains("{{") && version_values.iter().any(|v| is_old(v)) {
            return Err(d.refuse(
                kinds.first().copied().unwrap_or(0),
                format!("`kind: {kind}` is a template expression, so it cannot tell whether this {} object needs migrating", version_values.join(", ")),
                TEMPLATE_FIX,
            ));
        }
        if let Some(v) = version_values.iter().find(|v| is_old(v)) {
            if !workload && !ingress && OLD_WORKLOAD_VERSIONS.contains(&v.as_str()) {
                warnings.push(old_unknown_warning(&d.object, v));
            }
        }
        return unchanged;
    }
    if versions.len() != 1 || kinds.len() != 1 {
        return Err(d.refuse(
            versions.get(1).or(kinds.get(1)).copied().unwrap_or(0),
            "several top-level apiVersion or kind lines (probably chosen by `{{ if }}`, e.g. on .Capabilities)".into(),
            "keep only the apiVersion for Kubernetes 1.16+ (apps/v1 or networking.k8s.io/v1) and rerun",
        ));
    }
    let from = version_values[0].clone();
    let to = if workload {
        WORKLOAD_VERSION
    } else {
        INGRESS_VERSION
    };
    d.replace
        .insert(versions[0], vec![format!("apiVersion: {to}")]);
    let specs = d.top("spec");
    let &[spec] = specs.as_slice() else {
        return Err(d.refuse(
            specs.get(1).copied().unwrap_or(0),
            format!(
                "{} top-level `spec:` lines (expected exactly one)",
                specs.len()
            ),
            TEMPLATE_FIX,
        ));
    };
    if key_of(d.lines[spec]).is_some_and(|(_, r)| !r.is_empty()) {
        return Err(d.refuse(
            spec,
            "`spec:` has an inline value".into(),
            "write spec as a block mapping and rerun",
        ));
    }
    let spec_end = block_end(&d.lines, spec, 0);
    let notes = if workload {
        template_workload(&mut d, spec, spec_end)?
    } else {
        template_ingress(&mut d, spec, spec_end)?
    };
    let mut text = d.render();
    if !trailing_newline {
        text.pop();
    }
    Ok((
        text,
        Some(Change {
            object: d.object.clone(),
            from,
            to: to.into(),
            notes,
        }),
    ))
}

fn template_workload(
    d: &mut TemplateDoc<'_>,
    spec: usize,
    spec_end: usize,
) -> Result<Vec<String>, MigrateError> {
    let lines = d.lines.clone();
    let Some(ci) = (spec + 1..spec_end)
        .find(|&i| !is_transparent(lines[i]))
        .map(|i| indent_of(lines[i]))
    else {
        return Err(d.refuse(spec, "`spec:` is empty".into(), TEMPLATE_FIX));
    };
    // An action at the level of spec's fields could produce a selector this cannot see.
    if let Some(i) = (spec + 1..spec_end)
        .find(|&i| is_directive(lines[i]) && !is_control(lines[i]) && indent_of(lines[i]) <= ci)
    {
        return Err(d.refuse(
            i,
            format!("`{}` may produce fields of spec (such as a selector) that a line-based transform cannot see", lines[i].trim()),
            TEMPLATE_FIX,
        ));
    }
    let selectors = children(&lines, spec, spec_end, "selector");
    if let Some(&s) = selectors.first() {
        let end = block_end(&lines, s, ci);
        let inline = key_of(lines[s]).map(|(_, r)| r).unwrap_or_default();
        let ok = inline.contains("matchLabels")
            || inline.contains("matchExpressions")
            || !children(&lines, s, end, "matchLabels").is_empty()
            || !children(&lines, s, end, "matchExpressions").is_empty();
        if !ok {
            return Err(d.refuse(
                s,
                "spec.selector has neither matchLabels nor matchExpressions".into(),
                "write spec.selector.matchLabels yourself and rerun",
            ));
        }
        return Ok(Vec::new());
    }
    let no_labels = |d: &TemplateDoc<'_>| {
        MigrateError::Object {
        file: d.file.to_owned(),
        object: d.object.clone(),
        message: "apps/v1 requires spec.selector, and spec.template.metadata.labels is empty, so there is nothing to select the pods by".into(),
        fix: "add labels to spec.template.metadata.labels (e.g. app: NAME) or write spec.selector.matchLabels yourself, then rerun".into(),
    }
    };
    let find = |parent: usize, end: usize, key: &str| -> Option<(usize, usize)> {
        let c = children(&lines, parent, end, key);
        let &first = c.first()?;
        Some((first, block_end(&lines, first, indent_of(lines[first]))))
    };
    let Some((labels, labels_end)) = find(spec, spec_end, "template")
        .and_then(|(t, te)| find(t, te, "metadata"))
        .and_then(|(m, me)| find(m, me, "labels"))
    else {
        return Err(no_labels(d));
    };
    let inline = key_of(lines[labels]).map(|(_, r)| r).unwrap_or_default();
    let (block, shown): (Vec<String>, String) = if !inline.is_empty() {
        if inline.contains("{{") {
            return Err(d.refuse(
                labels,
                format!("the template labels `{inline}` contain a template expression, and the selector must match them exactly"),
                "write spec.selector.matchLabels yourself (e.g. with the same include) and rerun",
            ));
        }
        if inline == "{}" {
            return Err(no_labels(d));
        }
        (
            vec![format!("{}  matchLabels: {inline}", " ".repeat(ci))],
            inline.to_owned(),
        )
    } else {
        // Up to the next line at the labels' level, directives included: an action deeper
        // than `labels:` produces labels.
        let li0 = indent_of(lines[labels]);
        let raw_end = (labels + 1..lines.len())
            .find(|&i| {
                let t = lines[i].trim();
                !t.is_empty() && !t.starts_with('#') && indent_of(lines[i]) <= li0
            })
            .unwrap_or(lines.len())
            .max(labels_end);
        let body: Vec<usize> = (labels + 1..raw_end)
            .filter(|&i| {
                let t = lines[i].trim();
                !t.is_empty() && !t.starts_with('#')
            })
            .collect();
        if let Some(&i) = body.iter().find(|&&i| lines[i].contains("{{")) {
            return Err(d.refuse(
                i,
                format!("the template labels contain `{}`, and the selector must match them exactly (an `include ... | nindent N` cannot be copied to another depth)", lines[i].trim()),
                "write spec.selector.matchLabels yourself (e.g. with the same include and the right nindent) and rerun",
            ));
        }
        let Some(&first) = body.first() else {
            return Err(no_labels(d));
        };
        let li = indent_of(lines[first]);
        if let Some(&i) = body
            .iter()
            .find(|&&i| indent_of(lines[i]) != li || key_of(lines[i]).is_none())
        {
            return Err(d.refuse(
                i,
                format!(
                    "template label line `{}` is not a one-line `key: value`",
                    lines[i].trim()
                ),
                "write spec.selector.matchLabels yourself and rerun",
            ));
        }
        let block = body
            .iter()
            .map(|&i| format!("{}{}", " ".repeat(ci + 4), &lines[i][li..]))
            .collect();
        let shown = body
            .iter()
            .map(|&i| lines[i].trim().to_owned())
            .collect::<Vec<_>>()
            .join(", ");
        (block, format!("{{{shown}}}"))
    };
    let mut insert = vec![
        format!("{}selector:", " ".repeat(ci)),
        format!("{}  matchLabels:", " ".repeat(ci)),
    ];
    if block.len() == 1 && block[0].trim_start().starts_with("matchLabels:") {
        insert.pop();
    }
    insert.extend(block);
    d.after.insert(spec, insert);
    Ok(vec![format!("added spec.selector.matchLabels {shown}")])
}

fn template_ingress(
    d: &mut TemplateDoc<'_>,
    spec: usize,
    spec_end: usize,
) -> Result<Vec<String>, MigrateError> {
    let lines = d.lines.clone();
    let mut notes = Vec::new();
    let mut backends = 0usize;
    let (mut path_types, mut paths_added) = (0usize, 0usize);
    let spec_backend = children(&lines, spec, spec_end, "backend");
    for (i, &line) in lines.iter().enumerate().take(spec_end).skip(spec + 1) {
        if is_transparent(line) || key_of(line).map(|(k, _)| k) != Some("backend") {
            continue;
        }
        if template_backend(d, i)? {
            backends += 1;
        }
        if spec_backend.contains(&i) {
            let col = key_column(line);
            d.replace
                .insert(i, vec![format!("{}defaultBackend:", " ".repeat(col))]);
            notes.push("renamed spec.backend to spec.defaultBackend".to_owned());
        }
    }
    for p in spec + 1..spec_end {
        if is_transparent(lines[p]) || key_of(lines[p]).map(|(k, _)| k) != Some("paths") {
            continue;
        }
        if key_of(lines[p]).is_some_and(|(_, r)| !r.is_empty()) {
            return Err(d.refuse(
                p,
                "`paths:` has an inline value".into(),
                "write paths as a block list and rerun",
            ));
        }
        let end = block_end(&lines, p, key_column(lines[p]));
        let items: Vec<usize> = (p + 1..end)
            .filter(|&i| !is_transparent(lines[i]))
            .collect();
        let Some(&first) = items.first() else {
            continue;
        };
        let ii = indent_of(lines[first]);
        if !lines[first].trim_start().starts_with("- ") {
            return Err(d.refuse(
                first,
                "`paths:` is not followed by list items".into(),
                TEMPLATE_FIX,
            ));
        }
        let starts: Vec<usize> = items
            .iter()
            .copied()
            .filter(|&i| indent_of(lines[i]) == ii && lines[i].trim_start().starts_with("- "))
            .collect();
        for (n, &s) in starts.iter().enumerate() {
            let item_end = starts.get(n + 1).copied().unwrap_or(end);
            let ki = key_column(lines[s]);
            let Some((first_key, _)) = key_of(lines[s]) else {
                return Err(d.refuse(
                    s,
                    format!("path item `{}` is not a mapping", lines[s].trim()),
                    TEMPLATE_FIX,
                ));
            };
            let keys: Vec<(usize, &str)> = std::iter::once((s, first_key))
                .chain((s + 1..item_end).filter_map(|i| {
                    (!is_transparent(lines[i]) && indent_of(lines[i]) == ki)
                        .then(|| key_of(lines[i]).map(|(k, _)| (i, k)))
                        .flatten()
                }))
                .collect();
            let path_line = keys.iter().find(|(_, k)| *k == "path").map(|(i, _)| *i);
            let has_type = keys.iter().any(|(_, k)| *k == "pathType");
            let pad = " ".repeat(ki);
            let type_lines = vec![
                format!("{pad}{PATH_TYPE_COMMENT}"),
                format!("{pad}pathType: {PATH_TYPE}"),
            ];
            match (path_line, has_type) {
                (Some(_), true) => {}
                (Some(pl), false) => {
                    d.after.entry(pl).or_default().extend(type_lines);
                    path_types += 1;
                }
                (None, has_type) => {
                    let rest = &lines[s][ki..];
                    let mut new = vec![format!("{}- path: /", " ".repeat(ii))];
                    paths_added += 1;
                    if !has_type {
                        new.extend(type_lines);
                        path_types += 1;
                    }
                    new.push(format!("{pad}{rest}"));
                    d.replace.insert(s, new);
                }
            }
        }
    }
    notes.extend(ingress_notes(backends, path_types, paths_added));
    Ok(notes)
}

/// Rewrites the backend opened at line `b`; false when it already has the v1 shape.
fn template_backend(d: &mut TemplateDoc<'_>, b: usize) -> Result<bool, MigrateError> {
    let lines = d.lines.clone();
    if key_of(lines[b]).is_some_and(|(_, r)| !r.is_empty()) {
        return Err(d.refuse(
            b,
            "`backend:` has an inline value".into(),
            "write the backend as a block mapping and rerun",
        ));
    }
    let end = block_end(&lines, b, key_column(lines[b]));
    let mut name = None;
    let mut port = None;
    let mut col = None;
    for (i, &line) in lines.iter().enumerate().take(end).skip(b + 1) {
        if is_transparent(line) {
            if is_directive(line) {
                return Err(d.refuse(
                    i,
                    format!("`{}` inside a backend", line.trim()),
                    TEMPLATE_FIX,
                ));
            }
            continue;
        }
        match key_of(line) {
            Some(("serviceName", r)) => name = Some((i, r.to_owned())),
            Some(("servicePort", r)) => port = Some((i, r.to_owned())),
            Some(("service" | "resource", _)) => return Ok(false),
            _ => {
                return Err(d.refuse(
                    i,
                    format!("unexpected backend line `{}`", line.trim()),
                    "write the backend as service.name and service.port.number or .name yourself",
                ))
            }
        }
        col.get_or_insert(indent_of(line));
    }
    let (Some((ni, name)), Some((pi, port)), Some(col)) = (name, port, col) else {
        return Err(d.refuse(
            b,
            "backend without both serviceName and servicePort".into(),
            "write the backend as service.name and service.port.number or .name yourself",
        ));
    };
    if port.contains("{{") {
        return Err(d.refuse(
            pi,
            format!("`servicePort: {port}` is a template expression, so it cannot tell whether it is a port number (service.port.number) or a name (service.port.name)"),
            "write service.name and service.port.number (or .name) yourself and rerun",
        ));
    }
    let port_line = match unquote(&port).parse::<u64>() {
        Ok(n) => format!("number: {n}"),
        Err(_) => format!("name: {port}"),
    };
    let pad = " ".repeat(col);
    d.replace.insert(
        ni.min(pi),
        vec![
            format!("{pad}service:"),
            format!("{pad}  name: {name}"),
            format!("{pad}  port:"),
            format!("{pad}    {port_line}"),
        ],
    );
    d.replace.insert(ni.max(pi), Vec::new());
    Ok(true)
}

// ---- files ---------------------------------------------------------------------------------

/// One input: its path (`-` for stdin) and text.
#[derive(Debug, Clone)]
pub struct Input {
    /// Where it came from.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> MigrateError + '_ {
    move |source| MigrateError::Read {
        file: path.display().to_string(),
        source,
    }
}

/// Reads `-f` arguments: files, directories (their `.yaml`, `.yml` and `.json` files, sorted,
/// not recursive) and `-` (stdin, also the default when none is given).
pub fn read_inputs(args: &[PathBuf]) -> Result<Vec<Input>, MigrateError> {
    let stdin = [PathBuf::from("-")];
    let args = if args.is_empty() { &stdin[..] } else { args };
    let mut inputs = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(read_err(arg))?;
            inputs.push(Input {
                path: arg.clone(),
                text,
            });
        } else if arg.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(arg)
                .map_err(read_err(arg))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .and_then(|e| e.to_str())
                            .is_some_and(|e| ["yaml", "yml", "json"].contains(&e))
                })
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f).map_err(read_err(&f))?;
                inputs.push(Input { path: f, text });
            }
        } else {
            let text = std::fs::read_to_string(arg).map_err(read_err(arg))?;
            inputs.push(Input {
                path: arg.clone(),
                text,
            });
        }
    }
    Ok(inputs)
}

/// Runs `kubectl mesh migrate`: migrates every input, prints the result (or writes the files
/// with `in_place`, only once every input has migrated) and a summary on `summary`.
pub fn run(
    args: &[PathBuf],
    in_place: bool,
    json: bool,
    out: &mut impl Write,
    summary: &mut impl Write,
) -> Result<(), MigrateError> {
    if in_place && json {
        return Err(MigrateError::Usage(
            "--in-place keeps each file's format; drop -o json".into(),
        ));
    }
    let inputs = read_inputs(args)?;
    if in_place && inputs.iter().any(|i| i.path.as_os_str() == "-") {
        return Err(MigrateError::Usage(
            "--in-place needs files: pass -f FILE or -f DIR".into(),
        ));
    }
    // Everything is computed before anything is written or printed.
    let mut results = Vec::new();
    for input in &inputs {
        let file = match input.path.as_os_str() == "-" {
            true => "(stdin)".to_owned(),
            false => input.path.display().to_string(),
        };
        let m = migrate_text(&file, &input.text)?;
        if json && m.template {
            return Err(MigrateError::Usage(format!(
                "{file} is a Helm template (it contains `{{{{`), not YAML: -o json cannot print it; use -o yaml or --in-place"
            )));
        }
        results.push((input, file, m));
    }
    let mut total = 0;
    for (_, file, m) in &results {
        for c in &m.changes {
            let _ = writeln!(summary, "{file}: {c}");
            total += 1;
        }
        for w in &m.warnings {
            let _ = writeln!(summary, "{file}: warning: {w}");
        }
    }
    let changed_files = results
        .iter()
        .filter(|(_, _, m)| !m.changes.is_empty())
        .count();
    if in_place {
        write_all(
            results
                .iter()
                .filter(|(_, _, m)| !m.changes.is_empty())
                .map(|(i, _, m)| (i.path.as_path(), m.text.as_str())),
        )?;
        let _ = writeln!(
            summary,
            "migrated {total} object(s); rewrote {changed_files} of {} file(s)",
            results.len()
        );
        return Ok(());
    }
    if json {
        let items: Vec<serde_json::Value> = results
            .iter()
            .flat_map(|(_, _, m)| m.objects.iter().cloned())
            .collect();
        let _ = writeln!(out, "{}", crate::render::to_json(&items));
    } else {
        let many = results.len() > 1;
        for (_, file, m) in &results {
            if many {
                let _ = writeln!(out, "---\n# Source: {file}");
            }
            let _ = write!(out, "{}", m.text);
            if many && !m.text.ends_with('\n') {
                let _ = writeln!(out);
            }
        }
    }
    let _ = writeln!(
        summary,
        "migrated {total} object(s) in {changed_files} of {} file(s)",
        results.len()
    );
    Ok(())
}

/// Writes every file or none: each goes to a temporary file next to it first, and only when
/// all of those succeeded are they renamed over the originals.
pub fn write_all<'a>(
    files: impl IntoIterator<Item = (&'a Path, &'a str)>,
) -> Result<(), MigrateError> {
    let mut staged: Vec<(PathBuf, &Path)> = Vec::new();
    let cleanup = |staged: &[(PathBuf, &Path)]| {
        for (tmp, _) in staged {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for (path, text) in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.kubectl-mesh-migrate"));
        if let Err(source) = std::fs::write(&tmp, text) {
            cleanup(&staged);
            let _ = std::fs::remove_file(&tmp);
            return Err(MigrateError::Write {
                file: path.display().to_string(),
                source,
            });
        }
        if let Ok(meta) = std::fs::metadata(path) {
            let _ = std::fs::set_permissions(&tmp, meta.permissions());
        }
        staged.push((tmp, path));
    }
    for (i, (tmp, path)) in staged.iter().enumerate() {
        if let Err(source) = std::fs::rename(tmp, path) {
            cleanup(&staged[i..]);
            return Err(MigrateError::Write {
                file: path.display().to_string(),
                source,
            });
        }
    }
    Ok(())
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

    #[test]
    fn key_parsing() {
        assert_eq!(key_of("  - backend:"), Some(("backend", "")));
        assert_eq!(key_of("  name: x # c"), Some(("name", "x")));
        assert_eq!(key_of("  {{- if .x }}"), None);
        assert_eq!(key_column("    -   path: /"), 8);
        assert!(is_control("{{- end }}") && !is_control("{{ include \"x\" . }}"));
    }

    #[test]
    fn string_ports() {
        assert_eq!(port_value("8080"), port_value_num(8080));
        assert_eq!(
            serde_yaml_ng::to_string(&port_value("http")).unwrap_or_default(),
            "name: http\n"
        );
    }

    fn port_value_num(n: u64) -> Value {
        let mut m = Mapping::new();
        m.insert("number".into(), n.into());
        Value::Mapping(m)
    }
}
