//! The plain-YAML path of `migrate`: one parsed document in, the same object on the current API out.

use super::{
    ingress_notes, old_unknown_warning, Change, MigrateError, INGRESS_VERSION,
    OLD_INGRESS_VERSIONS, OLD_WORKLOAD_VERSIONS, PATH_TYPE, PATH_TYPE_COMMENT, WORKLOAD_KINDS,
    WORKLOAD_VERSION,
};
use serde_yaml_ng::{Mapping, Value};

pub(super) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

/// `apiVersion kind` of a parsed document (`? ?` for what it lacks).
pub(super) fn kind_of(v: &Value) -> String {
    format!(
        "{} {}",
        str_at(v, &["apiVersion"]).unwrap_or("?"),
        str_at(v, &["kind"]).unwrap_or("?")
    )
}

pub(super) fn object_name(v: &Value, doc: usize) -> String {
    let kind = str_at(v, &["kind"]).unwrap_or("object");
    match str_at(v, &["metadata", "name"]) {
        Some(n) => format!("{kind}/{n}"),
        None => format!("{kind}/(document {doc})"),
    }
}

pub(super) fn scalar_text(v: &Value) -> String {
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

pub(super) fn flow_labels(m: &Mapping) -> String {
    let pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{}: {}", scalar_text(k), scalar_text(v)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Migrates the text of one file; `file` is only used in messages.
pub(super) fn comment_path_types(yaml: &str) -> String {
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

pub(super) fn migrate_value(
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
pub(super) fn convert_backend(b: &Value) -> Result<Value, String> {
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
pub(super) fn port_value(text: &str) -> Value {
    let mut port = Mapping::new();
    match text.parse::<u64>() {
        Ok(n) => port.insert("number".into(), n.into()),
        Err(_) => port.insert("name".into(), text.into()),
    };
    Value::Mapping(port)
}

#[cfg(test)]
mod tests {
    use super::*;

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
