//! `render` output: golden files for the digimon example, Istio CRD schema validation, and the
//! rendered Envoy patches loaded by real Envoy (`envoy --mode validate`).

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/golden.rs"]
mod golden_support;
use golden_support::Golden;
use kubectl_mesh::delivery::{self, Pull, PullPolicy};
use kubectl_mesh::plan::is_subset;
use kubectl_mesh::render::{self, Api, Context, Module, RenderOptions, Rendered};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A stand-in module: golden files must not change whenever the filter is rebuilt.
const FAKE_MODULE: &[u8] = b"\0asm\x01\0\0\0";
const FAKE_SHA: &str = "93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476";

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Case {
    golden: &'static str,
    /// The config file, relative to the crate.
    config: &'static str,
    namespace: &'static str,
    selector: &'static [(&'static str, &'static str)],
    context: Context,
    api: Api,
    module: Delivery,
}

/// How a case's module reaches the proxy.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Delivery {
    ConfigMap,
    Https,
    /// An image (its digest implied from [`FAKE_MODULE`]), with pull options.
    Oci {
        policy: Option<PullPolicy>,
        secret: bool,
    },
}

const CASES: &[Case] = &[
    Case {
        golden: "digimon-sidecar-inbound",
        config: "tests/fixtures/digimon-server.yaml",
        namespace: "digimon",
        selector: &[("io.kompose.service", "server")],
        context: Context::SidecarInbound,
        api: Api::Envoyfilter,
        module: Delivery::ConfigMap,
    },
    Case {
        golden: "digimon-gateway",
        config: "../examples/digimon/mesh.yaml",
        namespace: "istio-system",
        selector: &[("istio", "ingressgateway")],
        context: Context::Gateway,
        api: Api::Envoyfilter,
        module: Delivery::ConfigMap,
    },
    Case {
        golden: "digimon-sidecar-outbound-remote",
        config: "../examples/digimon/mesh.yaml",
        namespace: "digimon",
        selector: &[("io.kompose.service", "web")],
        context: Context::SidecarOutbound,
        api: Api::Envoyfilter,
        module: Delivery::Https,
    },
    Case {
        golden: "digimon-wasmplugin",
        config: "tests/fixtures/digimon-server.yaml",
        namespace: "digimon",
        selector: &[("io.kompose.service", "server")],
        context: Context::SidecarInbound,
        api: Api::Wasmplugin,
        module: Delivery::ConfigMap,
    },
    Case {
        golden: "digimon-trafficextension-remote",
        config: "../examples/digimon/mesh.yaml",
        namespace: "istio-system",
        selector: &[("istio", "ingressgateway")],
        context: Context::Gateway,
        api: Api::Trafficextension,
        module: Delivery::Https,
    },
    Case {
        golden: "digimon-gateway-oci",
        config: "../examples/digimon/mesh.yaml",
        namespace: "istio-system",
        selector: &[("istio", "ingressgateway")],
        context: Context::Gateway,
        api: Api::Envoyfilter,
        module: Delivery::Oci {
            policy: Some(PullPolicy::Always),
            secret: false,
        },
    },
    Case {
        golden: "digimon-wasmplugin-oci",
        config: "tests/fixtures/digimon-server.yaml",
        namespace: "digimon",
        selector: &[("io.kompose.service", "server")],
        context: Context::SidecarInbound,
        api: Api::Wasmplugin,
        module: Delivery::Oci {
            policy: Some(PullPolicy::IfNotPresent),
            secret: true,
        },
    },
    // A Kubernetes Gateway API gateway (Gateway `public` in digimon): an HTTPRoute anchors the
    // hosts; the filter selects its pods by their gateway-name label (and enable's).
    Case {
        golden: "digimon-gateway-api",
        config: "../examples/digimon/mesh.yaml",
        namespace: "digimon",
        selector: &[("gateway.networking.k8s.io/gateway-name", "public")],
        context: Context::Gateway,
        api: Api::Envoyfilter,
        module: Delivery::ConfigMap,
    },
    // The same with a downloaded module and a WasmPlugin: `targetRefs` names the Gateway, and
    // no pod is touched.
    Case {
        golden: "digimon-gateway-api-wasmplugin-oci",
        config: "../examples/digimon/mesh.yaml",
        namespace: "digimon",
        selector: &[("gateway.networking.k8s.io/gateway-name", "public")],
        context: Context::Gateway,
        api: Api::Wasmplugin,
        module: Delivery::Oci {
            policy: None,
            secret: false,
        },
    },
];

fn options(case: &Case) -> RenderOptions {
    RenderOptions {
        name: "kubectl-mesh".into(),
        namespace: case.namespace.into(),
        selector: case
            .selector
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        context: case.context,
        api: case.api,
        module: match case.module {
            Delivery::ConfigMap => Module::ConfigMap(FAKE_MODULE.to_vec()),
            Delivery::Https => Module::Remote {
                url: "https://example.com/mesh_filter.wasm".into(),
                sha256: FAKE_SHA.into(),
                pull: Pull::default(),
            },
            Delivery::Oci { policy, secret } => {
                let pull = Pull {
                    policy,
                    secret: secret.then(|| "registry-credentials".to_owned()),
                };
                let url = "oci://registry.example.com/mesh/filter:v0.1.0";
                delivery::remote(url, None, pull, FAKE_MODULE).unwrap()
            }
        },
        gateway_deployment: kubectl_mesh::enable::load::gateway_deployment(
            &case
                .selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        gateway: Default::default(),
        source: case.config.into(),
        istio_version: kubectl_mesh::render::NEWEST_ISTIO,
    }
}

fn config(case: &Case) -> mesh_core::MeshConfig {
    render::load_config(&manifest().join(case.config)).unwrap()
}

fn rendered(case: &Case) -> (RenderOptions, Rendered) {
    let opts = options(case);
    let r = render::render(&config(case), &opts).unwrap();
    (opts, r)
}

#[test]
fn sidecar_inbound_refuses_routes_to_another_workload() {
    let case = &CASES[0];
    assert_eq!(case.context, Context::SidecarInbound);
    let full = render::load_config(&manifest().join("../examples/digimon/mesh.yaml")).unwrap();
    let err = render::render(&full, &options(case))
        .unwrap_err()
        .to_string();
    assert!(err.contains("hosts[1].routes[0].to"), "{err}");
    assert!(err.contains("web.digimon.svc.cluster.local"), "{err}");
    assert!(err.contains("--envoy-context gateway"), "{err}");
}

#[test]
fn golden_files_match() {
    let mut golden = Golden::new();
    for case in CASES {
        let (opts, r) = rendered(case);
        let text = render::render_text(&r, &opts, false).unwrap();
        let path = manifest()
            .join("tests/golden")
            .join(format!("{}.yaml", case.golden));
        golden.check(&path, &text);
    }
    golden.finish();
}

#[test]
fn json_output_is_a_list_of_the_same_objects() {
    for case in CASES {
        let (opts, r) = rendered(case);
        let list: Value =
            serde_json::from_str(&render::render_text(&r, &opts, true).unwrap()).unwrap();
        assert_eq!(list["kind"], "List");
        let items = list["items"].as_array().unwrap();
        let patches = !r.pod_labels.is_empty() || r.gateway_pod_spec.is_some();
        let extra = usize::from(r.gateway && patches);
        assert_eq!(items.len(), r.objects.len() + extra);
        assert_eq!(&items[..r.objects.len()], &r.objects[..]);
    }
}

// ---- CRD schema validation -------------------------------------------------------------------

/// Turns a CRD's structural schema into a JSON Schema that rejects what the API server would
/// silently prune: unknown fields become errors unless the schema preserves them.
fn strict(schema: &mut Value) {
    if let Value::Object(map) = schema {
        let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
        if map.contains_key("properties") && !preserve && !map.contains_key("additionalProperties")
        {
            map.insert("additionalProperties".into(), json!(false));
        }
        if map.remove("nullable") == Some(json!(true)) {
            if let Some(Value::String(t)) = map.get("type").cloned() {
                map.insert("type".into(), json!([t, "null"]));
            }
        }
        for v in map.values_mut() {
            strict(v);
        }
    } else if let Value::Array(items) = schema {
        items.iter_mut().for_each(strict);
    }
}

/// The `openAPIV3Schema` of a CRD version from Istio's generated CRDs.
fn crd_schema(kind: &str, version: &str) -> (String, Value) {
    let path = manifest().join("../../shared/schemas/istio/crd-all.gen.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let crd: Value = serde::Deserialize::deserialize(doc).unwrap();
        if crd["spec"]["names"]["kind"] != kind {
            continue;
        }
        for v in crd["spec"]["versions"].as_array().unwrap() {
            if v["name"] == version {
                let group = crd["spec"]["group"].as_str().unwrap().to_owned();
                return (group, v["schema"]["openAPIV3Schema"].clone());
            }
        }
    }
    panic!("no CRD for {kind} {version}");
}

fn crd_validator(kind: &str, version: &str) -> jsonschema::Validator {
    let (group, mut schema) = crd_schema(kind, version);
    strict(&mut schema);
    // The CRD schema omits the fields every object has.
    let props = schema["properties"].as_object_mut().unwrap();
    props.insert(
        "apiVersion".into(),
        json!({ "enum": [format!("{group}/{version}")] }),
    );
    props.insert("kind".into(), json!({ "enum": [kind] }));
    props.insert("metadata".into(), json!({ "type": "object" }));
    schema["required"] = json!(["apiVersion", "kind", "metadata", "spec"]);
    jsonschema::draft4::new(&schema).unwrap()
}

/// The CEL rules (`x-kubernetes-validations`) these CRDs use, evaluated in Rust. `None` for a
/// rule this table does not know: the test then fails, so a new rule cannot slip by unchecked.
fn cel(rule: &str, v: &Value) -> Option<bool> {
    let has = |k: &str| u8::from(v.get(k).is_some());
    let text = v.as_str().unwrap_or("");
    let keys = || v.as_object().into_iter().flat_map(|m| m.keys());
    let compact: String = rule.split_whitespace().collect();
    Some(match compact.as_str() {
        "(has(self.workloadSelector)?1:0)+(has(self.targetRefs)?1:0)<=1" => {
            has("workloadSelector") + has("targetRefs") <= 1
        }
        "(has(self.selector)?1:0)+(has(self.targetRef)?1:0)+(has(self.targetRefs)?1:0)<=1" => {
            has("selector") + has("targetRef") + has("targetRefs") <= 1
        }
        "(has(self.selector)?1:0)+(has(self.targetRefs)?1:0)<=1" => {
            has("selector") + has("targetRefs") <= 1
        }
        "has(self.wasm)!=has(self.lua)" => has("wasm") != has("lua"),
        r#"has(self.context)?((self.context=="WAYPOINT")?has(self.waypoint):!has(self.waypoint)):!has(self.waypoint)"# => {
            if v["context"] == "WAYPOINT" {
                has("waypoint") == 1
            } else {
                has("waypoint") == 0
            }
        }
        r#"!self.contains("*")"# => !text.contains('*'),
        r#"self.all(key,!key.contains("*"))"# => keys().all(|k| !k.contains('*')),
        "self.all(key,key.size()!=0)" => keys().all(|k| !k.is_empty()),
        "self.size()==0" => text.is_empty(),
        "0<self&&self<=65535" => v.as_u64().is_some_and(|p| (1..=65535).contains(&p)),
        r if r.contains("url(self).getScheme()") => match text.split_once("://") {
            Some((scheme, _)) => ["http", "https", "file", "oci"].contains(&scheme),
            None => true,
        },
        _ => return None,
    })
}

/// Walks schema and instance together and evaluates every CEL rule on the parts present.
fn cel_errors(schema: &Value, inst: &Value, path: &str, errors: &mut Vec<String>) {
    for r in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rule = r["rule"].as_str().unwrap();
        match cel(rule, inst) {
            Some(true) => {}
            Some(false) => errors.push(format!("{path}: {}", r["message"])),
            None => errors.push(format!("{path}: CEL rule not handled by this test: {rule}")),
        }
    }
    let props = schema["properties"].as_object();
    if let Some(obj) = inst.as_object() {
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => cel_errors(s, v, &format!("{path}.{k}"), errors),
                None if schema["additionalProperties"].is_object() => cel_errors(
                    &schema["additionalProperties"],
                    v,
                    &format!("{path}.{k}"),
                    errors,
                ),
                None => {}
            }
        }
    }
    if let Some(items) = inst.as_array() {
        for (i, v) in items.iter().enumerate() {
            cel_errors(&schema["items"], v, &format!("{path}[{i}]"), errors);
        }
    }
}

fn schema_errors(obj: &Value) -> Vec<String> {
    let kind = obj["kind"].as_str().unwrap();
    let version = obj["apiVersion"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let mut errors: Vec<String> = crd_validator(kind, version)
        .iter_errors(obj)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    cel_errors(&crd_schema(kind, version).1, obj, "", &mut errors);
    errors
}

#[test]
fn istio_objects_validate_against_the_crd_schemas() {
    let mut seen = BTreeMap::new();
    for case in CASES {
        let (_, r) = rendered(case);
        // Istio's kinds; the Gateway API's HTTPRoute meets its real CRD on the API server
        // (tests/apiserver.rs).
        for obj in r
            .objects
            .iter()
            .filter(|o| o["kind"] != "ConfigMap" && o["kind"] != "HTTPRoute")
        {
            *seen
                .entry(obj["kind"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
            let errors = schema_errors(obj);
            assert!(
                errors.is_empty(),
                "{} {}: {errors:#?}",
                case.golden,
                obj["kind"]
            );
        }
    }
    assert_eq!(
        seen.len(),
        5,
        "EnvoyFilter, WasmPlugin, TrafficExtension, Gateway and VirtualService all covered: {seen:?}"
    );
}

#[test]
fn schema_validation_catches_mistakes() {
    let (_, r) = rendered(&CASES[0]);
    let good = r.objects[1].clone();
    let mut typo = good.clone();
    typo["spec"]["configPatches"][0]["applyTo"] = json!("HTTP_FILTERS");
    assert!(!schema_errors(&typo).is_empty());
    let mut pruned = good.clone();
    pruned["spec"]["configPatches"][0]["match"]["listner"] = json!({});
    assert!(
        !schema_errors(&pruned).is_empty(),
        "an unknown field the server would prune is reported"
    );
    let (_, r) = rendered(&CASES[3]);
    let mut bad_sha = r.objects[1].clone();
    bad_sha["spec"]["sha256"] = json!("XYZ");
    assert!(!schema_errors(&bad_sha).is_empty());
    // CEL rules (x-kubernetes-validations) are checked too.
    let mut bad_url = r.objects[1].clone();
    bad_url["spec"]["url"] = json!("ftp://example.com/m.wasm");
    assert_eq!(
        schema_errors(&bad_url).len(),
        1,
        "{:?}",
        schema_errors(&bad_url)
    );
    let mut wildcard = good.clone();
    wildcard["spec"]["workloadSelector"]["labels"]["app"] = json!("*");
    assert!(
        schema_errors(&wildcard)
            .iter()
            .any(|e| e.contains("wildcard")),
        "{:?}",
        schema_errors(&wildcard)
    );
    let mut both = good;
    both["spec"]["targetRefs"] = json!([{ "kind": "Service", "name": "x" }]);
    assert!(
        schema_errors(&both)
            .iter()
            .any(|e| e.contains("only one of")),
        "{:?}",
        schema_errors(&both)
    );
}

// ---- core objects via k8s-openapi -----------------------------------------------------------

/// Every field survives a round trip through the k8s-openapi type, so none is misspelled.
fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> bool {
    let typed: T = serde_json::from_value(v.clone()).unwrap();
    is_subset(v, &serde_json::to_value(&typed).unwrap())
}

#[test]
fn core_objects_are_valid_kubernetes_types() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Volume, VolumeMount};
    for case in CASES.iter().filter(|c| c.module == Delivery::ConfigMap) {
        let (opts, r) = rendered(case);
        let cm = &r.objects[0];
        assert!(round_trips::<ConfigMap>(cm), "{cm}");
        let typed: ConfigMap = serde_json::from_value(cm.clone()).unwrap();
        assert_eq!(
            typed.binary_data.unwrap()[render::MODULE_FILE].0,
            FAKE_MODULE
        );
        if r.gateway {
            let patch = render::deployment_patch(&opts.gateway_deployment, &opts.namespace, &r);
            assert!(round_trips::<Deployment>(&patch), "{patch}");
        } else {
            let vols =
                render::parse_user_volumes(&r.pod_annotations[render::USER_VOLUME_ANNOTATION])
                    .unwrap();
            let mounts = render::parse_user_volumes(
                &r.pod_annotations[render::USER_VOLUME_MOUNT_ANNOTATION],
            )
            .unwrap();
            assert!(
                vols.iter().all(round_trips::<Volume>)
                    && mounts.iter().all(round_trips::<VolumeMount>)
            );
            let vols: Vec<Volume> = vols
                .into_iter()
                .map(|v| serde_json::from_value(v).unwrap())
                .collect();
            let mounts: Vec<VolumeMount> = mounts
                .into_iter()
                .map(|v| serde_json::from_value(v).unwrap())
                .collect();
            assert_eq!(
                vols[0].config_map.as_ref().unwrap().name,
                cm["metadata"]["name"].as_str().unwrap()
            );
            assert_eq!(vols[0].name, mounts[0].name);
        }
    }
    let bad = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "x" }, "binaryDta": {} });
    assert!(
        !round_trips::<ConfigMap>(&bad),
        "a misspelled field is caught"
    );
}

// ---- real Envoy ----------------------------------------------------------------------------

fn envoy() -> PathBuf {
    envoy_process::require_binary()
}

fn wasm() -> PathBuf {
    let path = std::env::var_os("MESH_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("../target/wasm32-wasip1/release/mesh_filter.wasm"));
    assert!(
        path.exists(),
        "no module at {} (run `make wasm`, or set MESH_WASM)",
        path.display()
    );
    path
}

/// A bootstrap whose listener carries the rendered HTTP filters and route, as Istio would
/// insert them (the Istio-shape suite in tests/ applies them to real Istio config dumps).
fn bootstrap(filters: &[Value], route: Option<&Value>) -> Value {
    let mut http_filters = filters.to_vec();
    http_filters.push(kubectl_mesh::envoy::router_filter());
    let mut routes: Vec<Value> = route.into_iter().cloned().collect();
    routes.push(json!({ "match": { "prefix": "/" }, "direct_response": { "status": 404 } }));
    json!({
        "static_resources": {
            "listeners": [{
                "name": "http",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "http",
                        "http_filters": http_filters,
                        "route_config": { "name": "r", "virtual_hosts": [{
                            "name": "all", "domains": ["*"], "routes": routes,
                        }]},
                    },
                }]}],
            }],
            "clusters": [{
                "name": "outbound|6000||server.digimon.svc.cluster.local",
                "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": { "cluster_name": "x", "endpoints": [] },
            }],
        },
    })
}

fn patch_values(r: &Rendered, apply_to: &str, operation: &str) -> Vec<Value> {
    r.objects
        .iter()
        .filter(|o| o["kind"] == "EnvoyFilter")
        .flat_map(|o| o["spec"]["configPatches"].as_array().unwrap().clone())
        .filter(|p| p["applyTo"] == apply_to && p["patch"]["operation"] == operation)
        .map(|p| p["patch"]["value"].clone())
        .collect()
}

/// The rendered HTTP filters with the module pointed at the local build.
fn local_filters(r: &Rendered) -> Vec<Value> {
    let module = wasm();
    let mut filters = patch_values(r, "HTTP_FILTER", "INSERT_BEFORE");
    let code = &mut filters[0]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"];
    assert_eq!(
        code,
        &json!(format!("{}/{}", render::MODULE_DIR, render::MODULE_FILE))
    );
    *code = json!(module.to_str().unwrap());
    filters
}

fn envoy_validate(config: &Value, name: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("kubectl-mesh-envoy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, serde_yaml_ng::to_string(config).unwrap()).unwrap();
    let out = std::process::Command::new(envoy())
        .args(["--mode", "validate", "--log-level", "error", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn envoy_loads_the_rendered_filter_and_route() {
    for case in CASES
        .iter()
        .filter(|c| c.module == Delivery::ConfigMap && c.api == Api::Envoyfilter)
    {
        let (_, r) = rendered(case);
        let filters = local_filters(&r);
        let route = patch_values(&r, "HTTP_ROUTE", "INSERT_FIRST");
        let (ok, log) = envoy_validate(&bootstrap(&filters, route.first()), case.golden);
        assert!(
            ok,
            "{}: envoy rejected the rendered patches:\n{log}",
            case.golden
        );
    }
}

#[test]
fn envoy_validation_can_fail() {
    let gateway = CASES
        .iter()
        .find(|c| c.context == Context::Gateway)
        .unwrap();
    let (_, r) = rendered(gateway);
    let mut filters = local_filters(&r);
    let mut route = patch_values(&r, "HTTP_ROUTE", "INSERT_FIRST").remove(0);
    route["route"]["cluster_headr"] = json!("x");
    let (ok, _) = envoy_validate(&bootstrap(&filters, Some(&route)), "broken-route");
    assert!(!ok, "a misspelled route field must be rejected");
    // Validate mode starts the VM and configures the filter: a config it refuses fails, so the
    // passing test above proves the filter accepts the rendered configuration.
    let route = patch_values(&r, "HTTP_ROUTE", "INSERT_FIRST").remove(0);
    filters[0]["typed_config"]["config"]["configuration"]["value"] = json!("{\"bogus\":1}");
    let (ok, log) = envoy_validate(&bootstrap(&filters, Some(&route)), "broken-config");
    assert!(!ok && log.contains("bogus"), "{log}");
}
