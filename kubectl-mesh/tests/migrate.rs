//! `migrate`: golden files for the digimon 1.15 manifests and Helm templates, the migrated
//! objects checked against the k8s-openapi types, idempotence, refusals and `--in-place`.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::Ingress;
use kubectl_mesh::migrate::{self, MigrateError, Migrated};
use kubectl_mesh::plan::is_subset;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures(dir: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/digimon/"
    ))
    .join(dir)
}

const DIRS: &[(&str, &str)] = &[
    ("k8s-1.15", "k8s-1.15"),
    ("helm-1.15/templates", "helm-1.15"),
];

/// Every fixture file of `dir`, sorted, with its text.
fn files(dir: &str) -> Vec<(String, String)> {
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

fn migrated(name: &str, text: &str) -> Migrated {
    migrate::migrate_text(name, text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn golden_files_match() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for (dir, golden) in DIRS {
        let golden_dir = manifest().join("tests/golden/migrate").join(golden);
        let mut summary = String::new();
        for (name, text) in files(dir) {
            let m = migrated(&name, &text);
            for c in &m.changes {
                summary.push_str(&format!("{name}: {c}\n"));
            }
            for w in &m.warnings {
                summary.push_str(&format!("{name}: warning: {w}\n"));
            }
            let path = golden_dir.join(&name);
            if update {
                std::fs::create_dir_all(&golden_dir).unwrap();
                std::fs::write(&path, &m.text).unwrap();
            } else if std::fs::read_to_string(&path).unwrap_or_default() != m.text {
                stale.push(format!("{} (got:\n{})", path.display(), m.text));
            }
        }
        let path = golden_dir.join("SUMMARY.txt");
        if update {
            std::fs::write(&path, &summary).unwrap();
        } else if std::fs::read_to_string(&path).unwrap_or_default() != summary {
            stale.push(format!("{} (got:\n{summary})", path.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "golden files differ; review and rerun with UPDATE_GOLDEN=1:\n{}",
        stale.join("\n")
    );
}

/// Stands in for `helm template`: `{{ .Values.replicaCount }}` becomes 1, every other
/// expression `x`, so the result can be parsed as YAML.
fn render_helm(text: &str) -> String {
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

fn docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Drops `null` fields (`creationTimestamp: null`), which the typed objects omit.
fn without_nulls(v: &Value) -> Value {
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

fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> T {
    let typed: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
    assert!(
        is_subset(&without_nulls(v), &serde_json::to_value(&typed).unwrap()),
        "a field was dropped by the typed round trip: {v}"
    );
    typed
}

/// Checks every Deployment and Ingress of `text` (after standing in for `helm template`)
/// against the k8s-openapi types; returns how many of each it saw.
fn typed_check(name: &str, text: &str) -> (usize, usize) {
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

#[test]
fn migrated_objects_are_valid_apps_v1_and_networking_v1() {
    let (mut deployments, mut ingresses) = (0, 0);
    for (dir, _) in DIRS {
        for (name, text) in files(dir) {
            let (d, i) = typed_check(&name, &migrated(&name, &text).text);
            deployments += d;
            ingresses += i;
        }
    }
    assert_eq!((deployments, ingresses), (10, 2));
}

/// `migrate -f CHART/` (the chart folder, not its templates/) prints the whole chart migrated.
#[test]
fn a_chart_folder_migrates_its_templates_to_apps_v1_with_selectors() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = migrate::run(
        &opts(&fixtures("helm-1.15"), false, false),
        &mut out,
        &mut err,
    )
    .unwrap();
    assert_eq!(status, migrate::Status::Done);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.matches("# Source: ").count(), 11, "{out}");
    assert!(
        !out.contains("Chart.yaml") && !out.contains("replicaCount: 1"),
        "chart metadata is not a manifest"
    );
    assert_eq!(typed_check("helm-1.15", &out), (5, 1));
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.ends_with("migrated 6 object(s) in 6 of 11 file(s)\n"),
        "{err}"
    );
}

/// Applies a unified diff (as `patch` would) to `old`; panics on a hunk that does not fit.
fn apply_unified(old: &str, hunks: &[&str]) -> String {
    let old: Vec<&str> = old.split_inclusive('\n').collect();
    let mut out = String::new();
    let mut pos = 0;
    for hunk in hunks {
        let mut lines = hunk.split_inclusive('\n');
        let header = lines.next().unwrap();
        let start: usize = header["@@ -".len()..]
            .split([',', ' '])
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let start = start.saturating_sub(1);
        out.extend(old[pos..start].iter().copied());
        pos = start;
        for l in lines {
            let (mark, text) = l.split_at(1);
            match mark {
                " " | "-" => {
                    assert_eq!(old[pos], text, "hunk {header} does not fit");
                    if mark == " " {
                        out.push_str(text);
                    }
                    pos += 1;
                }
                "+" => out.push_str(text),
                _ => panic!("unexpected diff line {l:?}"),
            }
        }
    }
    out.extend(old[pos..].iter().copied());
    out
}

/// Splits a multi-file unified diff into (file, hunks).
fn diff_files(diff: &str) -> Vec<(String, Vec<String>)> {
    let mut files: Vec<(String, Vec<String>)> = Vec::new();
    for line in diff.split_inclusive('\n') {
        if let Some(f) = line.strip_prefix("--- ") {
            files.push((f.trim_end().to_owned(), Vec::new()));
        } else if line.starts_with("+++ ") {
        } else if line.starts_with("@@ ") {
            files.last_mut().unwrap().1.push(line.to_owned());
        } else {
            files
                .last_mut()
                .unwrap()
                .1
                .last_mut()
                .unwrap()
                .push_str(line);
        }
    }
    files
}

#[test]
fn check_prints_a_diff_that_turns_the_chart_into_the_migrated_one_and_exits_1() {
    let bin = env!("CARGO_BIN_EXE_kubectl-mesh");
    let chart = fixtures("helm-1.15");
    let out = std::process::Command::new(bin)
        .args(["migrate", "--check", "-f"])
        .arg(&chart)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("check: 6 object(s) in 6 of 11 file(s) need migrating"),
        "{stderr}"
    );
    let changed = diff_files(&diff);
    assert_eq!(changed.len(), 6, "{diff}");
    for (file, hunks) in &changed {
        let path = PathBuf::from(file);
        assert!(path.starts_with(&chart), "{file}");
        let old = std::fs::read_to_string(&path).unwrap();
        let hunks: Vec<&str> = hunks.iter().map(String::as_str).collect();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let golden = manifest()
            .join("tests/golden/migrate/helm-1.15")
            .join(&name);
        assert_eq!(
            apply_unified(&old, &hunks),
            std::fs::read_to_string(golden).unwrap(),
            "{file}: the diff does not produce the migrated file"
        );
    }
    // The migrated result needs nothing more: --check exits 0 and prints no diff.
    let dir = scratch("check-clean");
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: x\nversion: 0.1.0\n",
    )
    .unwrap();
    for (name, _) in files("helm-1.15/templates") {
        let golden = manifest()
            .join("tests/golden/migrate/helm-1.15")
            .join(&name);
        std::fs::copy(golden, dir.join("templates").join(&name)).unwrap();
    }
    let before = std::fs::read_to_string(dir.join("templates/ingress.yaml")).unwrap();
    let out = std::process::Command::new(bin)
        .args(["migrate", "--check", "-f"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to migrate"));
    assert_eq!(
        std::fs::read_to_string(dir.join("templates/ingress.yaml")).unwrap(),
        before
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_never_writes() {
    let dir = scratch("check-writes-nothing");
    let f = copy_fixture(&dir, "server-deployment.yaml");
    let before = std::fs::read_to_string(&f).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut o = opts(&dir, false, false);
    o.check = true;
    assert_eq!(
        migrate::run(&o, &mut out, &mut err).unwrap(),
        migrate::Status::NeedsMigration
    );
    assert_eq!(std::fs::read_to_string(&f).unwrap(), before);
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("+apiVersion: apps/v1\n"));
    o.in_place = true;
    let e = migrate::run(&o, &mut Vec::new(), &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("--check"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_folder_with_nothing_to_migrate_says_so_and_why() {
    let run = |dir: &Path| {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = migrate::run(&opts(dir, false, false), &mut out, &mut err).unwrap();
        assert_eq!(status, migrate::Status::Done);
        String::from_utf8(err).unwrap()
    };
    let err = run(&fixtures("istio-native"));
    assert!(
        err.contains("istio-native: nothing to migrate: its 1 file(s) hold no Deployment, DaemonSet, ReplicaSet, StatefulSet or Ingress in an apiVersion that Kubernetes 1.16 removed (found: 1 networking.istio.io/v1alpha3 Gateway, 2 networking.istio.io/v1alpha3 VirtualService)"),
        "{err}"
    );
    let err = run(&fixtures("proto"));
    assert!(
        err.contains("proto: nothing to migrate: no .yaml, .yml or .json file below it; 1 file(s) of other types skipped"),
        "{err}"
    );
    let dir = scratch("empty-chart");
    std::fs::write(dir.join("Chart.yaml"), "apiVersion: v2\nname: x\n").unwrap();
    std::fs::write(dir.join("values.yaml"), "a: 1\n").unwrap();
    let err = run(&dir);
    assert!(err.contains("nothing to migrate: no .yaml, .yml or .json file below it; . is a Helm chart without a templates/ folder; 2 chart file(s)"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_typed_check_can_fail() {
    // An unmigrated Deployment is rejected by the apps/v1 type.
    let (_, text) = files("k8s-1.15")
        .into_iter()
        .find(|(n, _)| n == "server-deployment.yaml")
        .unwrap();
    let doc = docs(&text).remove(0);
    assert!(serde_json::from_value::<Deployment>(doc).is_err());
}

/// The line-based template transform and the YAML one agree on every fixture.
#[test]
fn template_transform_agrees_with_the_yaml_transform() {
    for (dir, _) in DIRS {
        for (name, text) in files(dir) {
            let plain = render_helm(&text);
            let by_yaml = migrated(&name, &plain);
            let by_lines = migrate::migrate_template(&name, &plain).unwrap();
            assert_eq!(docs(&by_yaml.text), docs(&by_lines.text), "{name}");
            assert_eq!(by_yaml.changes, by_lines.changes, "{name}");
        }
    }
}

#[test]
fn migrating_twice_changes_nothing() {
    for (dir, _) in DIRS {
        for (name, text) in files(dir) {
            let once = migrated(&name, &text);
            let twice = migrated(&name, &once.text);
            assert_eq!(twice.text, once.text, "{name}");
            assert!(twice.changes.is_empty(), "{name}: {:?}", twice.changes);
        }
    }
}

#[test]
fn unknown_objects_pass_through_byte_for_byte() {
    for (dir, _) in DIRS {
        for (name, text) in files(dir)
            .into_iter()
            .filter(|(n, _)| n.contains("service"))
        {
            let m = migrated(&name, &text);
            assert_eq!(m.text, text, "{name}");
            assert!(m.changes.is_empty());
        }
    }
}

#[test]
fn summary_line_names_object_versions_and_selector() {
    let (_, text) = files("k8s-1.15")
        .into_iter()
        .find(|(n, _)| n == "server-deployment.yaml")
        .unwrap();
    let m = migrated("server-deployment.yaml", &text);
    assert_eq!(
        m.changes[0].to_string(),
        "Deployment/server: extensions/v1beta1 -> apps/v1, added spec.selector.matchLabels {io.kompose.service: server}"
    );
}

#[test]
fn multi_document_input_keeps_every_document() {
    let text = "# leading\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: apps/v1beta2\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  selector: {matchLabels: {app: db}}\n  template: {metadata: {labels: {app: db}}}\n---\napiVersion: extensions/v1beta1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  template: {metadata: {labels: {app: agent}}}\n";
    let m = migrated("all.yaml", text);
    let out = docs(&m.text);
    assert_eq!(out.len(), 3);
    assert!(m
        .text
        .starts_with("# leading\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n"));
    assert_eq!(out[1]["apiVersion"], "apps/v1");
    assert_eq!(out[1]["spec"]["selector"]["matchLabels"]["app"], "db");
    assert_eq!(
        m.changes[0].notes,
        Vec::<String>::new(),
        "existing selector kept"
    );
    assert_eq!(out[2]["apiVersion"], "apps/v1");
    assert_eq!(out[2]["spec"]["selector"]["matchLabels"]["app"], "agent");
    assert_eq!(m.objects.len(), 3);
}

#[test]
fn networking_v1beta1_ingress_with_default_backend_and_named_port() {
    let text = "apiVersion: networking.k8s.io/v1beta1\nkind: Ingress\nmetadata:\n  name: i\nspec:\n  backend:\n    serviceName: fallback\n    servicePort: http\n  rules:\n  - host: a.example\n    http:\n      paths:\n      - path: /api\n        backend:\n          serviceName: api\n          servicePort: \"8080\"\n      - path: /x\n        pathType: Prefix\n        backend:\n          serviceName: x\n          servicePort: 80\n";
    let m = migrated("i.yaml", text);
    let ing: Ingress = round_trips(&docs(&m.text)[0]);
    let spec = ing.spec.unwrap();
    let def = spec.default_backend.unwrap().service.unwrap();
    assert_eq!(
        (def.name.as_str(), def.port.unwrap().name.as_deref()),
        ("fallback", Some("http"))
    );
    let paths = spec.rules.unwrap().remove(0).http.unwrap().paths;
    assert_eq!(paths[0].path.as_deref(), Some("/api"));
    assert_eq!(paths[0].path_type, "ImplementationSpecific");
    assert_eq!(
        paths[0]
            .backend
            .service
            .as_ref()
            .unwrap()
            .port
            .as_ref()
            .unwrap()
            .number,
        Some(8080)
    );
    assert_eq!(paths[1].path_type, "Prefix", "an existing pathType is kept");
    assert!(m.text.contains(migrate::PATH_TYPE_COMMENT));
    let summary = m.changes[0].to_string();
    assert!(
        summary.contains("renamed spec.backend to spec.defaultBackend"),
        "{summary}"
    );
    assert!(
        summary.contains("added pathType: ImplementationSpecific to 1 path(s)"),
        "{summary}"
    );
}

fn expect_err(name: &str, text: &str, wanted: &[&str]) -> MigrateError {
    let e = migrate::migrate_text(name, text).expect_err(name);
    let msg = e.to_string();
    for w in wanted {
        assert!(msg.contains(w), "`{w}` missing in: {msg}");
    }
    assert!(msg.contains("fix:"), "{msg}");
    e
}

#[test]
fn a_workload_without_template_labels_is_an_error_naming_file_object_and_fix() {
    let plain = "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: nolabels\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: i}]\n";
    let e = expect_err(
        "bad.yaml",
        plain,
        &[
            "bad.yaml",
            "Deployment/nolabels",
            "spec.template.metadata.labels",
        ],
    );
    assert!(matches!(e, MigrateError::Object { .. }));
    let helm = "apiVersion: apps/v1beta1\nkind: StatefulSet\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: {{ .Values.n }}\n  template:\n    metadata:\n      labels: {}\n";
    expect_err(
        "tpl.yaml",
        helm,
        &["tpl.yaml", "StatefulSet/{{ .Release.Name }}", "add labels"],
    );
}

#[test]
fn helm_constructs_it_cannot_rewrite_are_refused_with_the_line() {
    let include_labels = "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {{ .Values.replicaCount }}\n  template:\n    metadata:\n      labels:\n        {{- include \"chart.selectorLabels\" . | nindent 8 }}\n";
    let e = expect_err(
        "templates/web.yaml",
        include_labels,
        &["templates/web.yaml:10", "Deployment/web", "include"],
    );
    assert!(matches!(e, MigrateError::Template { .. }));
    let templated_port = "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  rules:\n    - http:\n        paths:\n          - backend:\n              serviceName: {{ .Release.Name }}\n              servicePort: {{ .Values.service.port }}\n";
    expect_err(
        "ing.yaml",
        templated_port,
        &["ing.yaml:11", "servicePort", "port.number"],
    );
    let capabilities = "{{- if .Capabilities.APIVersions.Has \"apps/v1\" }}\napiVersion: apps/v1\n{{- else }}\napiVersion: extensions/v1beta1\n{{- end }}\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  template:\n    metadata:\n      labels:\n        app: x\n";
    expect_err(
        "cap.yaml",
        capabilities,
        &["cap.yaml:4", "several top-level apiVersion"],
    );
    let hidden = "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  {{- include \"spec.selector\" . | nindent 2 }}\n  template:\n    metadata:\n      labels:\n        app: x\n";
    expect_err("hidden.yaml", hidden, &["hidden.yaml:6", "selector"]);
}

#[test]
fn helm_template_with_control_flow_keeps_every_expression() {
    let text = "{{- if .Values.enabled }}\napiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: {{ include \"chart.fullname\" . }}\nspec:\n  {{- if not .Values.autoscaling.enabled }}\n  replicas: {{ .Values.replicaCount }}\n  {{- end }}\n  template:\n    metadata:\n      labels:\n        app: web # the web app\n        tier: \"front\"\n    spec:\n      containers:\n        - name: web\n          image: \"{{ .Values.image.repository }}:{{ .Values.image.tag }}\"\n{{- end }}\n";
    let m = migrated("t.yaml", text);
    let count = |s: &str| s.matches("{{").count();
    assert_eq!(count(&m.text), count(text));
    for expr in text.split("{{").skip(1) {
        let expr = expr.split("}}").next().unwrap();
        assert!(m.text.contains(&format!("{{{{{expr}}}}}")), "{expr}");
    }
    assert!(
        m.text.contains("spec:\n  selector:\n    matchLabels:\n      app: web # the web app\n      tier: \"front\"\n  {{- if not"),
        "{}",
        m.text
    );
    let ingress = "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  backend:\n    serviceName: {{ .Release.Name }}-default\n    servicePort: 80\n  rules:\n    {{- range .Values.hosts }}\n    - host: {{ .host | quote }}\n      http:\n        paths:\n          - path: {{ .path }}\n            backend:\n              serviceName: {{ $.Release.Name }}\n              servicePort: http\n    {{- end }}\n";
    let m = migrated("i.yaml", ingress);
    assert_eq!(count(&m.text), count(ingress));
    let rendered = docs(&render_helm(&m.text)).remove(0);
    let ing: Ingress = round_trips(&rendered);
    let spec = ing.spec.unwrap();
    assert!(spec.default_backend.is_some());
    let rules = spec.rules.unwrap();
    let p = &rules[0].http.as_ref().unwrap().paths[0];
    assert_eq!(p.path_type, "ImplementationSpecific");
    assert_eq!(
        p.backend
            .service
            .as_ref()
            .unwrap()
            .port
            .as_ref()
            .unwrap()
            .name
            .as_deref(),
        Some("http")
    );
    assert!(
        m.text.contains("    name: {{ .Release.Name }}-default\n"),
        "{}",
        m.text
    );
}

fn opts(path: &Path, in_place: bool, json: bool) -> migrate::Options {
    migrate::Options {
        files: vec![path.to_path_buf()],
        in_place,
        json,
        check: false,
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kubectl-mesh-migrate-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_fixture(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(fixtures("k8s-1.15").join(name), &to).unwrap();
    to
}

#[test]
fn in_place_writes_all_files_or_none() {
    let dir = scratch("in-place");
    let good = copy_fixture(&dir, "server-deployment.yaml");
    let svc = copy_fixture(&dir, "server-service.yaml");
    let before = std::fs::read_to_string(&good).unwrap();
    let svc_before = std::fs::read_to_string(&svc).unwrap();
    let bad = dir.join("zz-bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: bad}\nspec: {template: {}}\n",
    )
    .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let e = migrate::run(&opts(&dir, true, false), &mut out, &mut err).unwrap_err();
    assert!(e.to_string().contains("Deployment/bad"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&good).unwrap(),
        before,
        "nothing written"
    );
    std::fs::remove_file(&bad).unwrap();
    migrate::run(&opts(&dir, true, false), &mut out, &mut err).unwrap();
    assert!(out.is_empty(), "--in-place prints no manifests");
    let after = std::fs::read_to_string(&good).unwrap();
    assert!(after.contains("apiVersion: apps/v1"));
    assert_eq!(std::fs::read_to_string(&svc).unwrap(), svc_before);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.contains("server-deployment.yaml: Deployment/server: extensions/v1beta1 -> apps/v1"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_output_is_a_list_and_refuses_templates() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    migrate::run(
        &opts(&fixtures("k8s-1.15"), false, true),
        &mut out,
        &mut err,
    )
    .unwrap();
    let list: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 11);
    let e = migrate::run(
        &opts(&fixtures("helm-1.15/templates"), false, true),
        &mut out,
        &mut err,
    )
    .unwrap_err();
    assert!(e.to_string().contains("Helm template"), "{e}");
    let e = migrate::run(&opts(&fixtures("k8s-1.15"), true, true), &mut out, &mut err).unwrap_err();
    assert!(e.to_string().contains("--in-place"), "{e}");
}

#[test]
fn the_binary_prints_manifests_on_stdout_and_the_summary_on_stderr() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-mesh"))
        .args(["migrate", "-f"])
        .arg(fixtures("k8s-1.15").join("server-deployment.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.starts_with("apiVersion: apps/v1\n"), "{stdout}");
    assert!(
        stderr.contains("Deployment/server: extensions/v1beta1 -> apps/v1, added spec.selector.matchLabels {io.kompose.service: server}"),
        "{stderr}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-mesh"))
        .args(["migrate", "-f", "/nonexistent/x.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.yaml"));
}
