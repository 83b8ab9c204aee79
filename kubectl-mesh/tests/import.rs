//! `import-envoy`: golden MeshConfigs and notes for every config of the import suite
//! (`tests/import/configs`), validation and round trip through the plugin's own loader, the
//! digimon import against `examples/digimon/mesh.yaml`, notes naming paths, `--strict`, `-o json`.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/golden.rs"]
mod golden_support;
use golden_support::Golden;
use kubectl_mesh::import::{self, ClusterTarget, Imported, Scope};
use kubectl_mesh::render::parse_config;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn digimon(file: &str) -> PathBuf {
    workspace().join("../shared/fixtures/digimon").join(file)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The inputs of one import-suite config: Envoy file, optional Ingress file.
fn inputs(dir: &Path) -> (PathBuf, Option<PathBuf>) {
    let case = std::fs::read_to_string(dir.join("case.yaml")).unwrap_or_default();
    let field = |k: &str| {
        case.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .map(|v| workspace().join(v.trim()))
    };
    (
        field("envoy").unwrap_or_else(|| dir.join("envoy.yaml")),
        field("ingress"),
    )
}

fn import_file(envoy: &Path, ingress: Option<&Path>) -> Imported {
    let ing = ingress.map(|p| (p.display().to_string(), read(p)));
    import::import(
        &envoy.display().to_string(),
        &read(envoy),
        ing.as_ref().map(|(f, t)| (f.as_str(), t.as_str())),
        "envoy",
        None,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", envoy.display()))
}

fn notes_text(i: &Imported, base: &Path) -> String {
    let mut lines: Vec<String> = i.notes.iter().map(|n| n.to_string()).collect();
    lines.dedup();
    let _ = base;
    lines.join("\n") + "\n"
}

#[test]
fn golden_imports_of_every_suite_config() {
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/import");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace().join("tests/import/configs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 7, "{dirs:?}");
    let mut golden_files = Golden::new();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (envoy, ingress) = inputs(&dir);
        let i = import_file(&envoy, ingress.as_deref());
        let yaml = import::to_yaml(&i.config).unwrap();
        // What it prints is what the plugin (and the filter) load, unchanged.
        let again = parse_config(&name, &yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(again, i.config, "{name}: round trip");
        assert_eq!(
            import::to_yaml(&again).unwrap(),
            yaml,
            "{name}: round trip text"
        );
        for (file, text) in [
            (format!("{name}.yaml"), yaml),
            (format!("{name}.notes.txt"), notes_text(&i, &dir)),
        ] {
            golden_files.check(&golden.join(&file), &text);
        }
    }
    golden_files.finish();
}

/// The digimon Envoy behind its Ingress: api.backend.com gets the Envoy's routes (any origin,
/// every path to server:6000, gRPC-Web), web.backend.com goes to web:8060. It differs from
/// examples/digimon/mesh.yaml exactly where the standalone Envoy differed from the authors'
/// later Istio VirtualService, which mesh.yaml follows.
#[test]
fn digimon_with_its_ingress() {
    let i = import_file(
        &digimon("standalone-envoy/envoy.yaml"),
        Some(&digimon("k8s-1.15/ingress.yaml")),
    );
    let cfg = &i.config;
    let example = parse_config(
        "mesh.yaml",
        &read(&workspace().join("examples/digimon/mesh.yaml")),
    )
    .unwrap();
    let domains = |c: &mesh_core::MeshConfig| {
        c.hosts
            .iter()
            .map(|h| h.domains.join(","))
            .collect::<Vec<_>>()
    };
    let mut ours = domains(cfg);
    let mut theirs = domains(&example);
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "the same two hosts");
    let api = cfg
        .hosts
        .iter()
        .find(|h| h.domains == ["api.backend.com"])
        .unwrap();
    let route = &api.routes[0];
    assert_eq!(api.routes.len(), 1);
    assert!(route.grpc_web);
    assert_eq!(
        route.matches,
        mesh_core::config::RouteMatch::default(),
        "every path, as envoy.yaml's prefix /"
    );
    let to = route.to.as_ref().unwrap();
    assert_eq!(
        (to.service.as_deref(), to.port),
        (Some("server"), Some(6000))
    );
    let cors = api.cors.as_ref().unwrap();
    assert_eq!(
        cors.allow_origins[0].prefix.as_deref(),
        Some("*"),
        "any origin, as envoy.yaml"
    );
    assert_eq!(cors.max_age, Some(1_728_000));
    assert_eq!(cors.allow_credentials, None);
    let web = cfg
        .hosts
        .iter()
        .find(|h| h.domains == ["web.backend.com"])
        .unwrap();
    let to = web.routes[0].to.as_ref().unwrap();
    assert_eq!((to.service.as_deref(), to.port), (Some("web"), Some(8060)));
    // The Ingress matched hosts without port: so does the import.
    assert!(cfg.host_matching.ignore_port && cfg.host_matching.ignore_trailing_dot);
    // And where mesh.yaml differs (the later VirtualService): one origin with credentials,
    // max-age 1728, only /digimon.Digimon/ routed.
    let ex_api = example
        .hosts
        .iter()
        .find(|h| h.domains == ["api.backend.com"])
        .unwrap();
    let ex_cors = ex_api.cors.as_ref().unwrap();
    assert_eq!(
        ex_cors.allow_origins[0].exact.as_deref(),
        Some("http://web.backend.com")
    );
    assert_eq!(
        (ex_cors.max_age, ex_cors.allow_credentials),
        (Some(1728), Some(true))
    );
    assert_eq!(
        ex_api.routes[0].matches.prefix.as_deref(),
        Some("/digimon.Digimon/")
    );
}

#[test]
fn clusters_naming_kubernetes_services_become_services() {
    let i = import_file(
        &workspace().join("tests/import/configs/handmade-features/envoy.yaml"),
        None,
    );
    let svc = |c: &str| i.clusters.get(c).cloned().unwrap();
    assert_eq!(
        svc("orders"),
        ClusterTarget::Service {
            service: "orders".into(),
            port: 9000,
            http2: false,
        }
    );
    assert_eq!(
        svc("users"),
        ClusterTarget::Service {
            service: "users.shop.svc.cluster.local".into(),
            port: 8080,
            http2: false,
        }
    );
    assert_eq!(svc("reports"), ClusterTarget::Raw);
    let note = i
        .notes
        .iter()
        .find(|n| n.path == "static_resources.clusters[3]")
        .unwrap();
    assert!(note.reason.contains("raw cluster name `reports`"), "{note}");
    // The Envoy defaults: ports and trailing dots are part of the host.
    assert!(!i.config.host_matching.ignore_port && !i.config.host_matching.ignore_trailing_dot);
}

const RETRY: &str = r#"
static_resources:
  listeners:
  - address: {socket_address: {address: 0.0.0.0, port_value: 80}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          strip_any_host_port: true
          route_config:
            virtual_hosts:
            - name: v
              domains: [a.example]
              routes:
              - match: {prefix: /a}
                route: {cluster: a}
              - match: {prefix: /b, query_parameters: [{name: x}]}
                route: {cluster: a}
              - match: {prefix: /c}
                route: {cluster: a, retry_policy: {retry_on: 5xx}}
          http_filters:
          - name: envoy.filters.http.lua
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - {name: a, load_assignment: {cluster_name: a, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: a, port_value: 80}}}}]}]}}
"#;

#[test]
fn notes_name_the_path_and_the_reason_and_the_route_is_kept_or_dropped() {
    let i = import::import("envoy.yaml", RETRY, None, "envoy", Some("shop")).unwrap();
    let base = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
    let find = |suffix: &str| {
        i.notes
            .iter()
            .find(|n| n.path == format!("{base}.{suffix}"))
            .unwrap_or_else(|| panic!("no note at {suffix}: {:#?}", i.notes))
    };
    let retry = find("route_config.virtual_hosts[0].routes[2].route.retry_policy");
    assert!(retry.reason.contains("retries") && !retry.info, "{retry}");
    let query = find("route_config.virtual_hosts[0].routes[1].match");
    assert_eq!(query.scope, Scope::Route { vhost: 0, route: 1 });
    assert!(query.reason.contains("queryParams") && query.reason.contains("route not carried"));
    let lua = find("http_filters[0]");
    assert_eq!(lua.scope, Scope::HttpFilter { index: 0 });
    let routes = &i.config.hosts[0].routes;
    assert_eq!(
        routes.len(),
        2,
        "the query-parameter route is dropped, the retry route kept"
    );
    assert_eq!(i.config.namespace, "shop");
    assert!(i.config.host_matching.ignore_port && !i.config.host_matching.ignore_trailing_dot);
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubectl-mesh"))
}

#[test]
fn the_binary_prints_yaml_notes_on_stderr_json_and_strict() {
    let dir = std::env::temp_dir().join(format!("kubectl-mesh-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("envoy.yaml");
    std::fs::write(&file, RETRY).unwrap();
    let out = bin()
        .args(["import-envoy", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(parse_config("out", &stdout).is_ok(), "{stdout}");
    assert!(
        stderr.contains(".routes[2].route.retry_policy: not carried: retries"),
        "{stderr}"
    );
    assert!(
        stderr.contains("imported 1 host(s), 2 route(s)"),
        "{stderr}"
    );
    let out = bin()
        .args(["import-envoy", "-o", "json", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["kind"], "MeshConfig");
    let out = bin()
        .args(["import-envoy", "--strict", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout with --strict");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--strict: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only `info` notes: --strict passes.
    let out = bin()
        .args(["import-envoy", "--strict", "-f"])
        .arg(digimon("standalone-envoy/envoy.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "digimon has cluster settings not carried: {stderr}"
    );
    let out = bin()
        .args(["import-envoy", "-f", "/nonexistent/envoy.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/envoy.yaml"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rds_and_empty_configs_are_errors_that_say_what_to_do() {
    let rds = RETRY.replace(
        "route_config:\n            virtual_hosts:",
        "rds: {route_config_name: x}\n          unused:\n            virtual_hosts:",
    );
    let e = import::import("e.yaml", &rds, None, "envoy", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("RDS") && e.contains("config_dump"), "{e}");
    let e = import::import("e.yaml", "static_resources: {}", None, "envoy", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no listener"), "{e}");
    let e = import::import("e.yaml", RETRY, Some(("i.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: x}\nspec:\n  rules:\n  - host: a\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {service: {name: other, port: {number: 80}}}\n")), "envoy", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--envoy-service"), "{e}");
}

/// A listener with two HTTP routes sets, named: `public` (a.example) and `admin` (b.example).
const TWO_LISTENERS: &str = r#"
static_resources:
  listeners:
  - name: public
    address: {socket_address: {address: 0.0.0.0, port_value: 80}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          use_remote_address: false
          route_config:
            virtual_hosts:
            - {name: v, domains: [a.example], routes: [{match: {prefix: /}, route: {cluster: a, timeout: 15s}}]}
          http_filters:
          - {name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  - name: admin
    address: {socket_address: {address: 0.0.0.0, port_value: 81}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: y
          route_config:
            virtual_hosts:
            - {name: w, domains: [b.example], routes: [{match: {prefix: /}, route: {cluster: a}}]}
          http_filters:
          - {name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: a
    connect_timeout: 5s
    lb_policy: ROUND_ROBIN
    load_assignment: {cluster_name: a, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: a, port_value: 80}}}}]}]}
"#;

fn write_temp(name: &str, text: &str) -> PathBuf {
    // Not the directory another test removes when it is done.
    let dir =
        std::env::temp_dir().join(format!("kubectl-mesh-import-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn listener_picks_what_to_import_and_the_other_note_says_how() {
    let file = write_temp("two-listeners.yaml", TWO_LISTENERS);
    let out = bin()
        .args(["import-envoy", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("a.example") && !stdout.contains("b.example"));
    assert!(
        stderr.contains("import it with --listener admin"),
        "{stderr}"
    );
    for pick in ["admin", "listeners[1]", "1"] {
        let out = bin()
            .args(["import-envoy", "--listener", pick, "-f"])
            .arg(&file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{pick}");
        assert!(
            stdout.contains("b.example") && !stdout.contains("a.example"),
            "{pick}: {stdout}"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("--listener public"));
    }
    let out = bin()
        .args(["import-envoy", "--listener", "nope", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--listener `nope`") && stderr.contains("public, admin"),
        "{stderr}"
    );
}

#[test]
fn strict_does_not_count_fields_set_to_envoys_defaults() {
    // lb_policy: ROUND_ROBIN, connect_timeout: 5s, use_remote_address: false, timeout: 15s:
    // all Envoy's defaults. The other listener is what --strict still refuses.
    let file = write_temp("defaults.yaml", TWO_LISTENERS);
    let out = bin()
        .args(["import-envoy", "--strict", "--listener", "public", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the other listener is not carried");
    assert!(
        stderr.contains("--strict: 1 thing(s)")
            && stderr.contains("lb_policy: info: `lb_policy: ROUND_ROBIN` is Envoy's default"),
        "{stderr}"
    );
    let (head, rest) = TWO_LISTENERS.split_once("  - name: admin").unwrap();
    let (_, clusters) = rest.split_once("  clusters:").unwrap();
    let one = format!("{head}  clusters:{clusters}");
    let file = write_temp("one.yaml", &one);
    let out = bin()
        .args(["import-envoy", "--strict", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nothing_to_import_still_prints_the_notes_that_say_why() {
    let text = RETRY.replace(
        "route: {cluster: a, retry_policy: {retry_on: 5xx}}",
        "route: {inline_cluster_specifier_plugin: {extension: {name: x, typed_config: {}}}}",
    );
    // Only the third route is left, and it cannot be carried.
    let text = text
        .replace("              - match: {prefix: /a}\n                route: {cluster: a}\n", "")
        .replace(
            "              - match: {prefix: /b, query_parameters: [{name: x}]}\n                route: {cluster: a}\n",
            "",
        );
    let file = write_temp("nothing.yaml", &text);
    let out = bin()
        .args(["import-envoy", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes[0].route.inline_cluster_specifier_plugin: not carried: choosing the cluster from a header or a plugin"),
        "{stderr}"
    );
    assert!(
        stderr.contains("virtual_hosts[0]: not carried: virtual host not carried: none of its routes can be carried"),
        "{stderr}"
    );
    assert!(
        stderr.contains("nothing to import: no virtual host could be carried (")
            && stderr.contains("listed above)"),
        "{stderr}"
    );
}

/// A cluster that spoke HTTP/2 (a gRPC server) keeps doing so: `to.http2: true` on a plain
/// route (a `grpcWeb` route implies it), so render makes Istio's cluster speak HTTP/2 whatever
/// the Service port is named.
#[test]
fn http2_clusters_carry_over_as_to_http2() {
    let text = r#"
static_resources:
  listeners:
  - address: {socket_address: {address: 0.0.0.0, port_value: 80}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          route_config:
            virtual_hosts:
            - name: v
              domains: [a.example]
              routes:
              - match: {prefix: /grpc}
                route: {cluster: g}
              - match: {prefix: /typed}
                route: {cluster: t}
              - match: {prefix: /}
                route: {cluster: h}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: g
    http2_protocol_options: {}
    load_assignment: {cluster_name: g, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: grpc, port_value: 50051}}}}]}]}
  - name: t
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment: {cluster_name: t, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: typed, port_value: 50052}}}}]}]}
  - name: h
    load_assignment: {cluster_name: h, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: web, port_value: 80}}}}]}]}
"#;
    let path = write_temp("http2.yaml", text);
    let i = import_file(&path, None);
    let routes = &i.config.hosts[0].routes;
    let http2: Vec<Option<bool>> = routes
        .iter()
        .map(|r| r.to.as_ref().and_then(|t| t.http2))
        .collect();
    assert_eq!(http2, vec![Some(true), Some(true), None]);
    assert!(
        i.notes
            .iter()
            .all(|n| !n.reason.contains("Service port name")),
        "HTTP/2 is carried, not noted as lost: {:#?}",
        i.notes
    );
}
