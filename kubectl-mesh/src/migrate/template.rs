//! The Helm-template path of `migrate`: a line-based transform that rewrites the apiVersion,
//! inserts the selector and rewrites Ingress backends and paths, never touching a `{{ ... }}`
//! expression, and refuses (with `FILE:LINE`) what it cannot rewrite safely.

use super::lines::{
    block_end, children, indent_of, is_control, is_directive, is_transparent, key_column, key_of,
    unquote,
};
use super::{
    ingress_notes, old_unknown_warning, Change, Chunk, MigrateError, INGRESS_VERSION,
    OLD_INGRESS_VERSIONS, OLD_WORKLOAD_VERSIONS, PATH_TYPE, PATH_TYPE_COMMENT, WORKLOAD_KINDS,
    WORKLOAD_VERSION,
};
use std::collections::BTreeMap;

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

/// `apiVersion kind` of a template document, from its top-level lines (`None`: neither line,
/// e.g. a document that is only `{{ ... }}` actions).
pub(super) fn kind_of(body: &str) -> Option<String> {
    let top = |key: &str| {
        body.lines()
            .filter(|l| indent_of(l) == 0 && !is_transparent(l))
            .find_map(|l| {
                key_of(l)
                    .filter(|(k, _)| *k == key)
                    .map(|(_, v)| unquote(v).to_owned())
            })
    };
    let (version, kind) = (top("apiVersion"), top("kind"));
    if version.is_none() && kind.is_none() {
        return None;
    }
    Some(format!(
        "{} {}",
        version.as_deref().unwrap_or("?"),
        kind.as_deref().unwrap_or("?")
    ))
}

const TEMPLATE_FIX: &str = "migrate this object by hand (or render the chart with `helm template` and migrate the output), then rerun for the rest";

pub(super) fn migrate_template_doc(
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
