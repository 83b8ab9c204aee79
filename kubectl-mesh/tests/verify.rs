//! `kubectl mesh verify`, the binary with real Envoy: the digimon Envoy (alone and behind its
//! Ingress) and its import answer alike; a hand-broken MeshConfig is reported field by field
//! with exit 1; what a MeshConfig cannot express is listed as such; the user's own requests are
//! sent; and `--proxy-dump` on the real Istio dumps shows no change for Istio's own routes while
//! the config's hosts are routed, with an explicit catch-all `notFound` as the negative control.
//! The foreign configs of `tests/import/` go through the same comparison in `make test-import`.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn digimon(file: &str) -> PathBuf {
    workspace().join("../shared/fixtures/digimon").join(file)
}

fn istio_dump(file: &str) -> PathBuf {
    workspace().join("../shared/fixtures/istio").join(file)
}

/// `kubectl-mesh verify ARGS` with the pinned (or `$MESH_ENVOY`) Envoy.
fn verify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-mesh"))
        .arg("verify")
        .arg("--envoy")
        .arg(envoy_process::require_binary())
        .args(args)
        .output()
        .unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The JSON report of `verify -o json ARGS`, with the exit status.
fn verify_json(args: &[&str]) -> (bool, Value) {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let out = verify(&all);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

fn temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kubectl-mesh-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn the_digimon_envoy_and_its_import_answer_alike_alone_and_behind_its_ingress() {
    let envoy = digimon("standalone-envoy/envoy.yaml");
    let ingress = digimon("k8s-1.15/ingress.yaml");
    let out = verify(&["-f", path(&envoy)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(" 0 differ ") && stdout.ends_with(": EQUAL\n"),
        "{stdout}"
    );
    let (ok, r) = verify_json(&["-f", path(&envoy), "--ingress", path(&ingress)]);
    assert!(ok, "{r:#}");
    assert_eq!(r["equal"], true);
    assert!(r["requests"].as_u64().unwrap() > 50, "{r:#}");
    assert_eq!(r["requests"], r["equalRequests"]);
    assert!(r["nativeChanges"].as_array().unwrap().len() > 3);
}

/// The negative control: the import with a CORS max-age off by one and the server's port
/// changed, given as `--config`. Every difference is one the MeshConfig can express.
#[test]
fn a_hand_broken_mesh_config_is_reported_field_by_field_with_exit_1() {
    let envoy = digimon("standalone-envoy/envoy.yaml");
    let text = std::fs::read_to_string(&envoy).unwrap();
    let mut cfg = kubectl_mesh::import::import(path(&envoy), &text, None, "envoy", None)
        .unwrap()
        .config;
    let host = &mut cfg.hosts[0];
    host.cors.as_mut().unwrap().max_age = Some(1_728_001);
    host.routes[0].to.as_mut().unwrap().port = Some(6001);
    let broken = temp("broken.yaml", &kubectl_mesh::import::to_yaml(&cfg).unwrap());
    let out = verify(&["-f", path(&envoy), "--config", path(&broken)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("response header access-control-max-age: native 1728000, filter 1728001"),
        "{stdout}"
    );
    assert!(
        stdout.contains("upstream: native digimon_service, filter server:6001"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the mesh config can express this"),
        "{stdout}"
    );
    assert!(stdout.ends_with(": NOT EQUAL\n"), "{stdout}");
    let (ok, r) = verify_json(&["-f", path(&envoy), "--config", path(&broken)]);
    assert!(!ok);
    let diffs = r["differences"].as_array().unwrap();
    assert!(!diffs.is_empty());
    assert!(diffs.iter().all(|d| d["expressible"] == true), "{r:#}");
}

/// The handmade config's Envoy-only wildcard (`web-*.example`): the import says it cannot be
/// carried, and verify lists those requests as differences the MeshConfig cannot express.
#[test]
fn what_a_mesh_config_cannot_express_is_listed_by_field() {
    let envoy = workspace().join("tests/import/configs/handmade-features/envoy.yaml");
    let (ok, r) = verify_json(&["-f", path(&envoy)]);
    assert!(!ok);
    let diffs = r["differences"].as_array().unwrap();
    assert!(!diffs.is_empty());
    for d in diffs {
        assert_eq!(d["expressible"], false, "{d:#}");
        assert!(
            d["notCarried"].as_str().unwrap().contains("web-*.example"),
            "{d:#}"
        );
        assert!(
            d["request"]
                .as_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("host=web-"),
            "{d:#}"
        );
    }
    let by_field = r["byField"].as_array().unwrap();
    assert!(
        by_field.iter().any(|f| f["field"] == "upstream"),
        "{by_field:#?}"
    );
}

#[test]
fn the_users_own_requests_are_sent_too() {
    let envoy = digimon("standalone-envoy/envoy.yaml");
    let (_, base) = verify_json(&["-f", path(&envoy)]);
    let requests = temp(
        "requests.yaml",
        "- hosts: [api.backend.com]\n  paths: [/digimon.Digimon/Create, /own]\n  origins: [~, 'http://web.backend.com']\n",
    );
    let (ok, r) = verify_json(&["-f", path(&envoy), "--requests", path(&requests)]);
    assert!(ok, "{r:#}");
    assert_eq!(
        r["requests"].as_u64().unwrap(),
        base["requests"].as_u64().unwrap() + 4
    );
    let bad = temp("bad.yaml", "- hosts: [a]\n  path: [/]\n");
    let out = verify(&["-f", path(&envoy), "--requests", path(&bad)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.yaml") && stderr.contains("path"),
        "{stderr}"
    );
}

#[test]
fn bad_input_says_what_to_do() {
    let envoy = digimon("standalone-envoy/envoy.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-mesh"))
        .args(["verify", "--envoy", "/nonexistent/envoy", "-f"])
        .arg(&envoy)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/envoy does not exist"));
    let out = verify(&["-f", path(&envoy), "--listener", "nope"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--listener `nope`"),
        "{stderr}"
    );
    let out = verify(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("-f envoy.yaml"),
        "{stderr}"
    );
}

fn example() -> String {
    path(&workspace().join("examples/digimon/mesh.yaml")).to_owned()
}

/// Istio's own routes on the real dumps: nothing changes for them, and the config's hosts are
/// now routed to their services.
#[test]
fn a_proxy_dump_shows_no_change_for_istios_own_routes() {
    for (dump, context) in [
        ("gateway-1.20-ossm2.6-config_dump.json", None),
        ("sidecar-1.20-ossm2.6-config_dump.json", None),
        (
            "sidecar-1.20-ossm2.6-config_dump.json",
            Some("sidecar-inbound"),
        ),
    ] {
        let dump = istio_dump(dump);
        let config = match context {
            Some(_) => path(&workspace().join("kubectl-mesh/tests/fixtures/digimon-server.yaml"))
                .to_owned(),
            None => example(),
        };
        let mut args = vec!["--proxy-dump", path(&dump), "--config", &config];
        if let Some(c) = context {
            args.extend(["--envoy-context", c]);
        }
        let (ok, r) = verify_json(&args);
        assert!(ok, "{r:#}");
        assert_eq!(r["clean"], true);
        assert!(r["otherRequests"].as_u64().unwrap() >= 14, "{r:#}");
        assert_eq!(r["otherChanged"].as_array().unwrap().len(), 0);
        assert!(r["unlandedPatches"].as_array().unwrap().is_empty());
        let hosts = r["configHosts"].as_array().unwrap();
        let routed = match context {
            Some(_) => "from inbound|8080||",
            None => "from outbound|6000||server.digimon.svc.cluster.local (it got content-type application/grpc)",
        };
        assert!(
            hosts.iter().any(|a| a["request"]
                .as_str()
                .unwrap()
                .contains("POST api.backend.com/digimon.Digimon/Call")
                && a["after"].as_str().unwrap().contains(routed)),
            "{hosts:#?}"
        );
    }
    let out = verify(&[
        "--proxy-dump",
        path(&istio_dump("gateway-1.20-ossm2.6-config_dump.json")),
        "--config",
        &example(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("on the proxy's own routes, 0 changed")
            && stdout.ends_with("verify: no change for traffic the config does not own\n"),
        "{stdout}"
    );
}

/// The negative control: an explicit `notFound` owns every host, so Istio's own routes for
/// other hosts now get the filter's answer; with `notFoundHosts: listed` they do not.
#[test]
fn a_config_that_owns_every_host_is_caught_changing_istios_routes() {
    let text = std::fs::read_to_string(example()).unwrap();
    let owns = temp(
        "owns.yaml",
        &format!("{text}notFound: {{status: 404, body: mine}}\n"),
    );
    let dump = istio_dump("gateway-1.20-ossm2.6-config_dump.json");
    let (ok, r) = verify_json(&["--proxy-dump", path(&dump), "--config", path(&owns)]);
    assert!(!ok);
    let changed = r["otherChanged"].as_array().unwrap();
    assert!(
        changed.iter().any(|c| c["after"]
            .as_str()
            .unwrap()
            .starts_with("404 answered by the proxy")),
        "{r:#}"
    );
    let listed = temp(
        "listed.yaml",
        &format!("{text}notFound: {{status: 404, body: mine}}\nnotFoundHosts: listed\n"),
    );
    let (ok, r) = verify_json(&["--proxy-dump", path(&dump), "--config", path(&listed)]);
    assert!(ok, "{r:#}");
}
