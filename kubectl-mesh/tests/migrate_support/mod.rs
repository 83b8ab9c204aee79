//! Shared by the `migrate` tests: the digimon fixtures, a stand-in for `helm template`, the
//! typed check of migrated objects, and scratch folders.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::Ingress;
use kubectl_mesh::migrate::{self, Migrated};
use kubectl_mesh::plan::is_subset;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures(dir: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/digimon/"
    ))
    .join(dir)
}

pub const DIRS: &[(&str, &str)] = &[
    ("k8s-1.15", "k8s-1.15"),
    ("helm-1.15/templates", "helm-1.15"),
];

/// Every fixture file of `dir`, sorted, with its text.
pub fn files(dir: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(fixtures(dir))
        .unwrap_or_else(|e| panic!("{}: {e}", fixtures(dir).display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(out.len() >= 10, "fixtures in {dir}: {}", out.len());
    out
}

pub fn migrated(name: &str, text: &str) -> Migrated {
    migrate::migrate_text(name, text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Stands in for `helm template`: `{{ .Values.replicaCount }}` becomes 1, every other
/// expression `x`, so the result can be parsed as YAML.
pub fn render_helm(text: &str) -> String {
    // Lines holding only an action (`{{- if ... }}`, `{{- end }}`) produce nothing.
    let text: String = text
        .lines()
        .filter(|l| !(l.trim().starts_with("{{") && l.trim().ends_with("}}")))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").unwrap() + start + 2;
        out.push_str(if rest[start..end].contains("replicaCount") {
            "1"
        } else {
            "x"
        });
        rest = &rest[end..];
    }
    out + rest
}

pub fn docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Drops `null` fields (`creationTimestamp: null`), which the typed objects omit.
pub fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

pub fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> T {
    let typed: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
    assert!(
        is_subset(&without_nulls(v), &serde_json::to_value(&typed).unwrap()),
        "a field was dropped by the typed round trip: {v}"
    );
    typed
}

/// Checks every Deployment and Ingress of `text` (after standing in for `helm template`)
/// against the k8s-openapi types; returns how many of each it saw.
pub fn typed_check(name: &str, text: &str) -> (usize, usize) {
    let (mut deployments, mut ingresses) = (0, 0);
    for doc in docs(&render_helm(text)) {
        match doc["kind"].as_str().unwrap() {
            "Deployment" => {
                deployments += 1;
                // k8s-openapi checks apiVersion and kind while deserializing.
                let d: Deployment = round_trips(&doc);
                let spec = d.spec;
                let labels = spec.template.metadata.unwrap().labels.unwrap();
                assert!(!labels.is_empty());
                assert_eq!(
                    spec.selector.match_labels.as_ref(),
                    Some(&labels),
                    "{name}: the selector must match the template labels"
                );
                assert!(spec.selector.match_expressions.is_none());
            }
            "Ingress" => {
                ingresses += 1;
                let ing: Ingress = round_trips(&doc);
                let rules = ing.spec.unwrap().rules.unwrap();
                assert_eq!(rules.len(), 2);
                for rule in rules {
                    for p in rule.http.unwrap().paths {
                        assert_eq!(p.path.as_deref(), Some("/"));
                        assert_eq!(p.path_type, "ImplementationSpecific");
                        let svc = p.backend.service.unwrap();
                        let port = svc.port.unwrap();
                        assert!(port.number.is_some() && port.name.is_none());
                        assert!(["web", "envoy"].contains(&svc.name.as_str()));
                    }
                }
            }
            "Service" => {
                assert_eq!(doc["apiVersion"], "v1");
            }
            other => panic!("{name}: unexpected kind {other}"),
        }
    }
    (deployments, ingresses)
}

pub fn opts(path: &Path, in_place: bool, json: bool) -> migrate::Options {
    migrate::Options {
        files: vec![path.to_path_buf()],
        in_place,
        json,
        check: false,
    }
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kubectl-mesh-migrate-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn copy_fixture(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(fixtures("k8s-1.15").join(name), &to).unwrap();
    to
}
