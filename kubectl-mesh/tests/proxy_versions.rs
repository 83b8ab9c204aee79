//! Every Envoy extension and type the rendered objects name must exist in every supported
//! istio-proxy release, or the patch carrying it must be gated by `match.proxy.proxyVersion`
//! to exactly the releases that have it. The releases and their extensions are data derived
//! from istio/proxy's build config per tag (kubectl-mesh/data/istio-proxy/, see its README).

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proxy_table;

use kubectl_mesh::render::{self, Api, Context, Module, RenderOptions};
use proxy_table::{manifest, tsv, Linked, Release, Table};
use regex_lite::Regex;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

// ---- rendering every variant ------------------------------------------------------------------

const FAKE_MODULE: &[u8] = b"\0asm\x01\0\0\0";
const FAKE_SHA: &str = "93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476";

/// Every (context, API, module delivery) kubectl-mesh renders, with a config that uses every
/// feature the context allows (gRPC-Web routes, so the `grpc_web` filter is there too).
fn variants() -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for context in [
        Context::Gateway,
        Context::SidecarOutbound,
        Context::SidecarInbound,
    ] {
        for api in [Api::Envoyfilter, Api::Wasmplugin, Api::Trafficextension] {
            for remote in [false, true] {
                let (config, namespace, selector) = match context {
                    Context::Gateway => (
                        "../examples/digimon/mesh.yaml",
                        "istio-system",
                        ("istio", "ingressgateway"),
                    ),
                    Context::SidecarOutbound => (
                        "../examples/digimon/mesh.yaml",
                        "digimon",
                        ("io.kompose.service", "web"),
                    ),
                    Context::SidecarInbound => (
                        "tests/fixtures/digimon-server.yaml",
                        "digimon",
                        ("io.kompose.service", "server"),
                    ),
                };
                let cfg = render::load_config(&manifest().join(config)).unwrap();
                let opts = options(context, api, remote, namespace, selector, config);
                let r = render::render(&cfg, &opts).unwrap();
                let label = format!(
                    "--envoy-context {} --api {} ({})",
                    context.istio().to_ascii_lowercase().replace('_', "-"),
                    format!("{api:?}").to_ascii_lowercase(),
                    if remote {
                        "remote module"
                    } else {
                        "ConfigMap module"
                    }
                );
                out.push((label, r.objects));
            }
        }
    }
    out
}

fn options(
    context: Context,
    api: Api,
    remote: bool,
    namespace: &str,
    selector: (&str, &str),
    source: &str,
) -> RenderOptions {
    RenderOptions {
        name: "kubectl-mesh".into(),
        namespace: namespace.into(),
        selector: [(selector.0.to_string(), selector.1.to_string())].into(),
        context,
        api,
        module: if remote {
            Module::Remote {
                url: "https://example.com/mesh_filter.wasm".into(),
                sha256: FAKE_SHA.into(),
                pull: Default::default(),
            }
        } else {
            Module::ConfigMap(FAKE_MODULE.to_vec())
        },
        gateway_deployment: "istio-ingressgateway".into(),
        gateway: Default::default(),
        source: source.into(),
        istio_version: kubectl_mesh::render::NEWEST_ISTIO,
    }
}

// ---- what a rendered object needs from the proxy -------------------------------------------

/// One thing a proxy must know to accept a patch or object.
struct Need {
    /// What the object says: `@type …`, `type_urls …`, `runtime …` or `name …`.
    said: String,
    /// The extension behind it.
    extension: String,
    linked: Linked,
    /// Which object and patch carries it.
    carrier: String,
    /// The patch's `match.proxy.proxyVersion`, if any.
    gate: Option<String>,
}

/// Type URLs and extension names in `v`: `@type` and `type_urls` values, Wasm `runtime`, and
/// `name` values that are Envoy extension names (other names are instance names).
fn said(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("@type", Value::String(s)) => out.push(("@type".into(), s.clone())),
                    ("type_urls", Value::Array(a)) => out.extend(
                        a.iter()
                            .filter_map(|u| u.as_str())
                            .map(|u| ("type_urls".into(), u.to_string())),
                    ),
                    ("runtime" | "name", Value::String(s)) if s.starts_with("envoy.") => {
                        out.push((k.clone(), s.clone()))
                    }
                    _ => said(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| said(x, out)),
        _ => {}
    }
}

fn needs(table: &Table, variant: &str, objects: &[Value]) -> Vec<Need> {
    let mut out = Vec::new();
    let mut push = |said_: Vec<(String, String)>, carrier: String, gate: Option<String>| {
        for (key, value) in said_ {
            let (extension, linked) = if key == "@type" || key == "type_urls" {
                table.types.get(&value).cloned().unwrap_or_else(|| {
                    panic!("{carrier}: type URL {value} is not in data/istio-proxy/type-urls.tsv; add it with the extension that handles it")
                })
            } else if let Some(l) = table.named.get(&value) {
                (value.clone(), *l)
            } else if table.all_build().contains(&value) {
                (value.clone(), Linked::Build)
            } else {
                panic!("{carrier}: {key} {value} is no istio-proxy extension in data/istio-proxy/")
            };
            out.push(Need {
                said: format!("{key} {value}"),
                extension,
                linked,
                carrier: carrier.clone(),
                gate: gate.clone(),
            });
        }
    };
    for obj in objects {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let id = format!(
            "{kind} {}/{}",
            obj["metadata"]["namespace"].as_str().unwrap_or(""),
            obj["metadata"]["name"].as_str().unwrap_or("")
        );
        match kind {
            "EnvoyFilter" => {
                for (i, p) in obj["spec"]["configPatches"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .enumerate()
                {
                    let mut s = Vec::new();
                    said(&p["patch"]["value"], &mut s);
                    let carrier = format!(
                        "{id} configPatches[{i}] (applyTo {}, context {}) [{variant}]",
                        p["applyTo"].as_str().unwrap_or("?"),
                        p["match"]["context"].as_str().unwrap_or("ANY")
                    );
                    let gate = p["match"]["proxy"]["proxyVersion"]
                        .as_str()
                        .map(String::from);
                    push(s, carrier, gate);
                }
            }
            // istiod turns these into the Wasm HTTP filter with runtime envoy.wasm.runtime.v8
            // (istio/istio pilot/pkg/model/extensions.go defaultRuntime); no proxyVersion here.
            "WasmPlugin" | "TrafficExtension" => {
                let s = vec![
                    (
                        "@type".to_string(),
                        "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
                            .to_string(),
                    ),
                    ("runtime".to_string(), "envoy.wasm.runtime.v8".to_string()),
                ];
                push(
                    s,
                    format!("{id} (the filter istiod builds from it) [{variant}]"),
                    None,
                );
            }
            _ => {
                let mut s = Vec::new();
                said(obj, &mut s);
                assert!(
                    s.is_empty(),
                    "{id} names Envoy types {s:?}; teach proxy_versions.rs where they go"
                );
            }
        }
    }
    out
}

/// Why `need` is wrong for the table's releases, if it is.
fn violation(table: &Table, need: &Need) -> Option<String> {
    if need.linked != Linked::Build {
        return None;
    }
    let lacks = |r: &Release| !table.has(r, &need.extension);
    let missing = table.ranges(lacks);
    match &need.gate {
        None if missing == "none" => None,
        None => Some(format!("missing in: {missing}\n    gate: none, so the patch reaches those proxies and they reject the whole listener")),
        Some(re) => {
            let Ok(rx) = Regex::new(re) else {
                return Some(format!("gate proxyVersion {re:?} is no valid regex"));
            };
            // A gate may leave out releases that have the extension (the Lua strip is only
            // for proxies without early header mutation); it must not reach one without it.
            let reached_lacking = table.ranges(|r| lacks(r) && rx.is_match(&r.version));
            if reached_lacking == "none" {
                return None;
            }
            Some(format!(
                "missing in: {missing}\n    gate: proxyVersion {re:?} still matches: {reached_lacking}"
            ))
        }
    }
}

#[test]
fn rendered_extensions_exist_in_every_istio_proxy_they_reach() {
    let table = Table::load();
    // (extension, why) -> (what the objects say, which patches carry it)
    type Found = (BTreeSet<String>, BTreeSet<String>);
    let mut problems: BTreeMap<(String, String), Found> = BTreeMap::new();
    let mut checked = 0;
    for (variant, objects) in variants() {
        for need in needs(&table, &variant, &objects) {
            checked += 1;
            if let Some(why) = violation(&table, &need) {
                let p = problems.entry((need.extension, why)).or_default();
                p.0.insert(need.said);
                p.1.insert(need.carrier);
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} needs found: the walk over rendered objects is broken"
    );
    if problems.is_empty() {
        return;
    }
    let mut msg = String::from(
        "Rendered objects name Envoy extensions that some supported istio-proxy releases lack \
         (data/istio-proxy/, from istio/proxy's build config per tag), without a \
         match.proxy.proxyVersion that excludes those releases:\n",
    );
    for ((ext, why), (said, carriers)) in &problems {
        let said: Vec<&str> = said.iter().map(String::as_str).collect();
        msg.push_str(&format!(
            "\n- extension {ext} (rendered as: {})\n    {why}\n    carried by {} patches:\n",
            said.join("; "),
            carriers.len()
        ));
        for c in carriers {
            msg.push_str(&format!("      {c}\n"));
        }
    }
    panic!("{msg}");
}

// ---- the table itself ------------------------------------------------------------------------

#[test]
fn table_is_complete_and_ordered() {
    let table = Table::load();
    let names: Vec<&str> = table.releases.iter().map(|r| r.name.as_str()).collect();
    for must in [
        "1.20.0",
        "1.20.4",
        "1.20.5",
        "1.21.0",
        "1.21.0-rc.1",
        "1.21.1",
        "1.22.0",
        "1.30.0",
        "master",
    ] {
        assert!(names.contains(&must), "releases.tsv lacks {must}");
    }
    assert_eq!(names.last(), Some(&"master"));
    for minor in 20..=30 {
        assert!(
            names.contains(&format!("1.{minor}.0").as_str()),
            "releases.tsv lacks 1.{minor}.0"
        );
    }
    for r in &table.releases {
        assert!(
            table.sets.contains_key(&r.set),
            "{}: extension set {} is no extensions.tsv column",
            r.name,
            r.set
        );
        assert!(
            table.has(r, "envoy.filters.network.http_connection_manager"),
            "{}: no HTTP connection manager",
            r.name
        );
    }
    for set in table.sets.keys() {
        let first = table
            .releases
            .iter()
            .find(|r| &r.set == set)
            .unwrap_or_else(|| panic!("set {set} unused"));
        assert_eq!(
            &first.name, set,
            "set columns are named by the first release that has them"
        );
    }
    // What the brief of issue 15 said, checked against the table.
    let lacking: Vec<&str> = table
        .releases
        .iter()
        .filter(|r| !r.name.contains('-') && r.name != "master")
        .filter(|r| !table.has(r, "envoy.http.early_header_mutation.header_mutation"))
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        lacking,
        ["1.20.0", "1.20.1", "1.20.2", "1.20.3", "1.20.4", "1.21.0"]
    );
}

fn dump_bootstrap(file: &str) -> Value {
    let path = manifest().join("../../shared/fixtures/istio").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let dump: Value = serde_json::from_str(&text).unwrap();
    dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["@type"]
                .as_str()
                .unwrap()
                .ends_with("BootstrapConfigDump")
        })
        .unwrap()["bootstrap"]
        .clone()
}

#[test]
fn table_agrees_with_the_real_1_20_dumps() {
    let table = Table::load();
    let not_listed: BTreeMap<String, String> = tsv("ossm-1.20.8-not-listed.tsv")
        .into_iter()
        .map(|r| (r["extension"].clone(), r["reason"].clone()))
        .collect();
    for file in [
        "gateway-1.20-ossm2.6-config_dump.json",
        "sidecar-1.20-ossm2.6-config_dump.json",
    ] {
        let b = dump_bootstrap(file);
        let version = b["node"]["metadata"]["ISTIO_VERSION"].as_str().unwrap();
        let release = table
            .releases
            .iter()
            .find(|r| r.version == version)
            .unwrap_or_else(|| panic!("{file}: ISTIO_VERSION {version} not in releases.tsv"));
        let mut listed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in b["node"]["extensions"].as_array().unwrap() {
            let urls = listed
                .entry(e["name"].as_str().unwrap().to_string())
                .or_default();
            for u in e["type_urls"].as_array().into_iter().flatten() {
                urls.insert(format!("type.googleapis.com/{}", u.as_str().unwrap()));
            }
        }
        assert!(
            listed.len() > 200,
            "{file}: only {} node.extensions",
            listed.len()
        );
        let set = &table.sets[&release.set];
        // Build-config names up to this release (istio-proxy's own filters joined the build
        // config only in 1.31, d13a386d7; before that its BUILD linked them directly).
        let upto = table
            .releases
            .iter()
            .position(|r| r.version == version)
            .unwrap();
        let known: BTreeSet<&String> = table.releases[..=upto]
            .iter()
            .flat_map(|r| &table.sets[&r.set])
            .collect();
        // The table's extensions for this release are what the real proxy registered...
        for ext in set {
            let in_dump = listed.contains_key(ext);
            match not_listed.get(ext) {
                None => assert!(in_dump, "{file}: extensions.tsv says {version} has {ext}, node.extensions does not list it"),
                Some(why) => assert!(!in_dump, "{file}: {ext} is listed after all; drop it from ossm-1.20.8-not-listed.tsv ({why})"),
            }
        }
        for ext in not_listed.keys() {
            assert!(
                set.contains(ext),
                "ossm-1.20.8-not-listed.tsv: {ext} is not in the table for {version}"
            );
        }
        // ...and every build-config extension the real proxy registered is in the table.
        for name in listed.keys().filter(|n| known.contains(n)) {
            assert!(
                set.contains(name),
                "{file}: node.extensions lists {name}, extensions.tsv says {version} lacks it"
            );
        }
        // The type URLs kubectl-mesh renders belong to the extensions type-urls.tsv names.
        for r in tsv("type-urls.tsv") {
            let (url, ext) = (&r["type_url"], &r["extension"]);
            match r["in_1.20_dump"].as_str() {
                "yes" => {
                    let urls = listed.get(ext).unwrap_or_else(|| {
                        panic!("{file}: type-urls.tsv says {ext} is listed; it is not")
                    });
                    assert!(
                        url == "-" || urls.contains(url),
                        "{file}: {ext} does not list {url}, only {urls:?}"
                    );
                    if r["linked"] == "build" {
                        assert!(set.contains(ext), "type-urls.tsv: {ext} is linked=build but not in extensions.tsv for {version}");
                    } else {
                        assert!(
                            !table.all_build().contains(ext),
                            "type-urls.tsv: {ext} is in a build config, not core"
                        );
                    }
                }
                "no" => assert!(
                    !listed.contains_key(ext),
                    "{file}: {ext} is listed; set in_1.20_dump=yes"
                ),
                other => panic!("type-urls.tsv: in_1.20_dump {other:?}"),
            }
        }
    }
}

#[test]
fn feature_regexes_match_exactly_the_releases_that_have_them() {
    let table = Table::load();
    for f in tsv("features.tsv") {
        let (name, first, re) = (
            &f["feature"],
            &f["first_release"],
            &f["proxy_version_regex"],
        );
        let rx = Regex::new(re).unwrap_or_else(|e| panic!("features.tsv {name}: {e}"));
        let from = table
            .releases
            .iter()
            .position(|r| &r.name == first)
            .unwrap_or_else(|| panic!("features.tsv {name}: {first} not in releases.tsv"));
        for (i, r) in table.releases.iter().enumerate() {
            assert_eq!(
                rx.is_match(&r.version),
                i >= from,
                "features.tsv {name}: {re} on {} ({})",
                r.name,
                r.version
            );
        }
        if name == "envoy_wasm_failure_policy" {
            // Envoy added PluginConfig.failure_policy in 1.33.0 (main, 2024-10-24).
            for r in &table.releases {
                let has = match r.envoy_line.strip_prefix("release/v1.") {
                    Some(n) => n.parse::<u32>().unwrap() >= 33,
                    None => r.envoy_commit_date.as_str() >= "2024-10-25",
                };
                assert_eq!(
                    rx.is_match(&r.version),
                    has,
                    "{name}: {} is on Envoy {} ({})",
                    r.name,
                    r.envoy_line,
                    r.envoy_commit_date
                );
            }
        }
    }
}

/// The gate check itself: an exact gate passes, one that still reaches a proxy lacking the
/// extension fails. The exact regex is the one the header strip
/// needs (RE2 has no look-ahead, so it lists what to include).
#[test]
fn gate_check_refuses_a_proxy_version_regex_reaching_a_release_without_it() {
    let table = Table::load();
    let need = |gate: Option<&str>| Need {
        said: "@type …HeaderMutation".into(),
        extension: "envoy.http.early_header_mutation.header_mutation".into(),
        linked: Linked::Build,
        carrier: "test".into(),
        gate: gate.map(String::from),
    };
    let exact = r"^1\.(20\.([5-9]|[1-9][0-9])|21\.([1-9]|[1-9][0-9])|2[2-9]|[3-9][0-9])([.-]|$)";
    assert_eq!(violation(&table, &need(Some(exact))), None);
    let loose = violation(&table, &need(Some(r"^1\.2[0-9]"))).unwrap();
    assert!(
        loose.contains("still matches: 1.20.0-beta.0 … 1.20.4, 1.21.0-beta.0 … 1.21.0"),
        "{loose}"
    );
    // A gate narrower than the extension's releases is fine: the patch is for those only.
    assert_eq!(violation(&table, &need(Some(r"^1\.2[2-9]\."))), None);
    assert!(violation(&table, &need(None))
        .unwrap()
        .contains("gate: none"));
    let mut core = need(None);
    core.linked = Linked::Core;
    assert_eq!(violation(&table, &core), None);
}

/// The regexes the rendered objects use split every release of the table as its data says:
/// each proxy gets exactly one reserved-header strip (native where it has early header
/// mutation, Lua before) and exactly one fail-policy merge (`failure_policy` where its Envoy
/// has it, `fail_open` before).
#[test]
fn product_gates_split_the_releases_as_the_table_says() {
    use kubectl_mesh::proxy_version::{EARLY_HEADER_MUTATION, WASM_FAILURE_POLICY};
    let table = Table::load();
    let policy = tsv("features.tsv")
        .into_iter()
        .find(|f| f["feature"] == "envoy_wasm_failure_policy")
        .expect("features.tsv has envoy_wasm_failure_policy");
    let first = table
        .releases
        .iter()
        .position(|r| r.name == policy["first_release"])
        .expect("its first release is in releases.tsv");
    for (feature, has) in [
        (
            EARLY_HEADER_MUTATION,
            Box::new(|_: usize, r: &Release| {
                table.has(r, "envoy.http.early_header_mutation.header_mutation")
            }) as Box<dyn Fn(usize, &Release) -> bool>,
        ),
        (
            WASM_FAILURE_POLICY,
            Box::new(|i: usize, _: &Release| i >= first),
        ),
    ] {
        let present = Regex::new(&feature.present()).unwrap();
        let absent = Regex::new(&feature.absent()).unwrap();
        for (i, r) in table.releases.iter().enumerate() {
            let want = has(i, r);
            assert_eq!(
                (present.is_match(&r.version), absent.is_match(&r.version)),
                (want, !want),
                "{}: release {} ({}) has it: {want}",
                feature.name,
                r.name,
                r.version
            );
        }
    }
}
