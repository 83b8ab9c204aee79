//! Unit tests of `render.rs`.

use super::*;
use k8s_openapi::api::core::v1::VolumeMount;

fn cfg() -> MeshConfig {
    parse_config(
        "t.yaml",
        "apiVersion: kubectl-mesh/v1alpha1\nkind: MeshConfig\nhosts:\n- domains: ['*']\n  routes:\n  - to: {service: web, port: 80}\n",
    )
    .unwrap()
}

fn opts(context: Context, api: Api, module: Module) -> RenderOptions {
    RenderOptions {
        name: "kubectl-mesh".into(),
        namespace: "ns".into(),
        selector: BTreeMap::from([("app".into(), "web".into())]),
        context,
        api,
        module,
        gateway_deployment: "istio-ingressgateway".into(),
        gateway: Default::default(),
        source: "t.yaml".into(),
        istio_version: crate::render::NEWEST_ISTIO,
    }
}

#[test]
fn config_errors_name_file_and_field() {
    let e = parse_config(
        "m.yaml",
        "apiVersion: kubectl-mesh/v1alpha1\nkind: MeshConfig\nhosts:\n- domains: []\n  routes: []\n",
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("m.yaml: invalid field `hosts[0].domains`"),
        "{msg}"
    );
    assert!(msg.contains("fix:"), "{msg}");
    let e = parse_config("m.yaml", "apiVersion: x\nkind: MeshConfig\nbogus: 1\n").unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
}

#[test]
fn empty_module_refuses_with_make_hint() {
    let e = render(
        &cfg(),
        &opts(
            Context::Gateway,
            Api::Envoyfilter,
            Module::ConfigMap(vec![]),
        ),
    )
    .unwrap_err();
    assert!(e.to_string().contains("make wasm"), "{e}");
}

#[test]
fn oversized_module_points_to_module_url() {
    let big = vec![0u8; CONFIGMAP_LIMIT + 1];
    let e = render(
        &cfg(),
        &opts(Context::Gateway, Api::Envoyfilter, Module::ConfigMap(big)),
    )
    .unwrap_err();
    assert!(e.to_string().contains("--module-url"), "{e}");
}

#[test]
fn sidecar_without_selector_is_refused() {
    let mut o = opts(
        Context::SidecarInbound,
        Api::Envoyfilter,
        Module::ConfigMap(vec![1]),
    );
    o.selector.clear();
    assert!(matches!(
        render(&cfg(), &o),
        Err(RenderError::NoSelector(_))
    ));
}

#[test]
fn bad_sha_is_refused() {
    let m = Module::Remote {
        url: "https://x/m.wasm".into(),
        sha256: "abc".into(),
        pull: Default::default(),
    };
    let e = render(&cfg(), &opts(Context::Gateway, Api::Envoyfilter, m)).unwrap_err();
    assert!(matches!(e, RenderError::BadSha256(_)));
}

#[test]
fn sidecar_gets_user_volume_annotations_and_gateway_gets_pod_spec() {
    let r = render(
        &cfg(),
        &opts(
            Context::SidecarInbound,
            Api::Envoyfilter,
            Module::ConfigMap(vec![1]),
        ),
    )
    .unwrap();
    let mounts = parse_user_volumes(&r.pod_annotations[USER_VOLUME_MOUNT_ANNOTATION]).unwrap();
    let mount: VolumeMount = serde_json::from_value(mounts[0].clone()).unwrap();
    assert_eq!(
        (mount.name.as_str(), mount.mount_path.as_str()),
        (VOLUME_NAME, MODULE_DIR)
    );
    assert!(r.gateway_pod_spec.is_none());
    let r = render(
        &cfg(),
        &opts(
            Context::Gateway,
            Api::Envoyfilter,
            Module::ConfigMap(vec![1]),
        ),
    )
    .unwrap();
    assert!(!r.pod_annotations.contains_key(USER_VOLUME_ANNOTATION));
    assert!(r.gateway_pod_spec.is_some());
}

#[test]
fn hash_follows_config_and_module() {
    let o = opts(
        Context::Gateway,
        Api::Envoyfilter,
        Module::ConfigMap(vec![1]),
    );
    let a = render(&cfg(), &o).unwrap().config_hash;
    let o2 = opts(
        Context::Gateway,
        Api::Envoyfilter,
        Module::ConfigMap(vec![2]),
    );
    assert_ne!(a, render(&cfg(), &o2).unwrap().config_hash);
    let mut c = cfg();
    c.namespace = "other".into();
    assert_ne!(a, render(&c, &o).unwrap().config_hash);
}

#[test]
fn every_object_is_labelled_managed_by() {
    for api in [Api::Envoyfilter, Api::Wasmplugin, Api::Trafficextension] {
        let r = render(
            &cfg(),
            &opts(Context::SidecarOutbound, api, Module::ConfigMap(vec![1])),
        )
        .unwrap();
        assert_eq!(r.objects.len(), if api == Api::Envoyfilter { 2 } else { 3 });
        for o in &r.objects {
            assert_eq!(o["metadata"]["labels"][MANAGED_BY_LABEL], MANAGER, "{o}");
        }
    }
}

/// A config of `hosts` hosts with ten prefix routes each, as YAML.
fn many_hosts(hosts: usize) -> MeshConfig {
    let mut text = String::from("apiVersion: kubectl-mesh/v1alpha1\nkind: MeshConfig\nhosts:\n");
    for h in 0..hosts {
        text.push_str(&format!("- domains: [svc-{h}.example.com]\n  routes:\n"));
        for r in 0..10 {
            text.push_str(&format!(
                "  - match: {{prefix: /api/v{r}/}}\n    to: {{service: svc-{h}, port: 8080}}\n"
            ));
        }
    }
    parse_config("big.yaml", &text).unwrap()
}

#[test]
fn an_object_the_api_server_cannot_store_is_refused_before_anything_is_applied() {
    let module = Module::ConfigMap(vec![1; 1000]);
    for api in [Api::Envoyfilter, Api::Wasmplugin] {
        // A thousand hosts fit in one object; five thousand do not.
        let fits = render(
            &many_hosts(1000),
            &opts(Context::Gateway, api, module.clone()),
        )
        .unwrap();
        let largest = fits
            .objects
            .iter()
            .map(|o| serde_json::to_vec(o).unwrap().len())
            .max()
            .unwrap();
        assert!(largest < OBJECT_LIMIT, "{largest}");
        let e = render(
            &many_hosts(5000),
            &opts(Context::Gateway, api, module.clone()),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, RenderError::ObjectTooLarge { .. }), "{msg}");
        assert!(msg.starts_with("t.yaml: the rendered "), "{msg}");
        assert!(msg.contains("fix: make the config smaller"), "{msg}");
    }
}

fn cluster_patches(yaml: &str) -> Result<Vec<serde_json::Value>, RenderError> {
    let cfg = parse_config("t.yaml", yaml)?;
    let r = render(
        &cfg,
        &opts(
            Context::Gateway,
            Api::Envoyfilter,
            Module::ConfigMap(vec![1]),
        ),
    )?;
    Ok(r.objects
        .iter()
        .flat_map(|o| {
            o["spec"]["configPatches"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|p| p["applyTo"] == "CLUSTER")
        .collect())
}

#[test]
fn grpc_web_targets_get_http2_unless_told_otherwise() {
    let head = "apiVersion: kubectl-mesh/v1alpha1\nkind: MeshConfig\nnamespace: d\nhosts:\n- domains: [a]\n  routes:\n";
    let p = cluster_patches(&format!(
        "{head}  - grpcWeb: true\n    to: {{service: server, port: 6000}}\n  - match: {{prefix: /w}}\n    to: {{service: web, port: 80}}\n"
    ))
    .unwrap();
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(
        p[0]["match"]["cluster"],
        serde_json::json!({ "service": "server.d.svc.cluster.local", "portNumber": 6000 })
    );
    assert_eq!(p[0]["match"]["context"], "GATEWAY");
    // A port Istio already speaks HTTP/2 to can be left to Istio.
    let p = cluster_patches(&format!(
        "{head}  - grpcWeb: true\n    to: {{service: server, port: 6000, http2: false}}\n"
    ))
    .unwrap();
    assert!(p.is_empty());
    // A plain route can ask for it too, and a raw cluster is matched by name.
    let p = cluster_patches(&format!(
        "{head}  - match: {{prefix: /x}}\n    to: {{cluster: 'outbound|9|x|y', http2: true}}\n  - to: {{service: web, port: 80}}\n"
    ))
    .unwrap();
    assert_eq!(p[0]["match"]["cluster"]["name"], "outbound|9|x|y");
    // Two routes disagreeing on one cluster: named, with the fix.
    let e = cluster_patches(&format!(
        "{head}  - grpcWeb: true\n    match: {{prefix: /g}}\n    to: {{service: server, port: 6000}}\n  - to: {{service: server, port: 6000, http2: false}}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("hosts[0].routes[1].to.http2") && e.contains("fix:"),
        "{e}"
    );
}
