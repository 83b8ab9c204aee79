//! The rendered objects against what the API server enforces: Istio's and the Gateway API's
//! CRD schemas (structural schema and CEL rules) and the Kubernetes types of core objects.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/cases.rs"]
mod cases;
use cases::*;
use kubectl_mesh::plan::is_subset;
use kubectl_mesh::render;
use serde_json::{json, Value};
use std::collections::BTreeMap;

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
