//! `migrate`'s transform: golden files for the digimon 1.15 manifests and Helm templates, the
//! migrated objects checked against the k8s-openapi types, idempotence, pass-through, refusals.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod migrate_support;

#[path = "support/golden.rs"]
mod golden_support;
use golden_support::Golden;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::Ingress;
use kubectl_mesh::migrate::{self, MigrateError};
use migrate_support::*;

#[test]
fn golden_files_match() {
    let mut golden_files = Golden::new();
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
            golden_files.check(&golden_dir.join(&name), &m.text);
        }
        golden_files.check(&golden_dir.join("SUMMARY.txt"), &summary);
    }
    golden_files.finish();
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
