//! `migrate`'s inputs and outputs: chart folders, `--check` (a diff that applies, exit 1, no
//! writes), folders with nothing to migrate, `--in-place` all or nothing, JSON, the binary.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod migrate_support;

use kubectl_mesh::migrate;
use migrate_support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

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
