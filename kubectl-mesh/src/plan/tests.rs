//! Unit tests of `plan.rs`.

use super::*;
use crate::render::{render, Api, Context, Module, RenderOptions};
use k8s_openapi::api::apps::v1::DeploymentSpec;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn desired(context: Context) -> Rendered {
    desired_with(
        context,
        Api::Envoyfilter,
        Module::ConfigMap(vec![0, 97, 115, 109]),
    )
}

fn desired_with(context: Context, api: Api, module: Module) -> Rendered {
    let cfg = crate::render::parse_config(
        "t.yaml",
        "apiVersion: kubectl-mesh/v1alpha1\nkind: MeshConfig\nhosts:\n- domains: ['*']\n  routes:\n  - to: {service: web, port: 80}\n",
    )
    .unwrap();
    let opts = RenderOptions {
        name: "kubectl-mesh".into(),
        namespace: "ns".into(),
        selector: BTreeMap::from([("app".into(), "web".into())]),
        context,
        api,
        module,
        gateway_deployment: "gw".into(),
        gateway: Default::default(),
        source: "t.yaml".into(),
        istio_version: crate::render::NEWEST_ISTIO,
    };
    render(&cfg, &opts).unwrap()
}

fn namespace(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Namespace {
    let map = |kv: &[(&str, &str)]| {
        Some(
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    Namespace {
        metadata: ObjectMeta {
            name: Some("ns".into()),
            labels: map(labels),
            annotations: map(annotations),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn deployment(annotations: BTreeMap<String, String>) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            ..Default::default()
        },
        spec: DeploymentSpec {
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: None,
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A Deployment as an earlier `enable` of `d` left its pod template.
fn set_up(d: &Rendered) -> Deployment {
    let mut dep = deployment(d.pod_annotations.clone());
    if let Some(m) = dep.spec.template.metadata.as_mut() {
        m.labels = Some(d.pod_labels.clone());
    }
    dep
}

/// Applies a plan to the observed state the way the API server would (for the idempotence test).
fn converge(d: &Rendered, mut obs: Observed, actions: &[Action]) -> Observed {
    for a in actions {
        match a {
            Action::PatchNamespace { patch, .. } => {
                let mut ns = serde_json::to_value(&obs.namespace).unwrap();
                merge(&mut ns, patch);
                obs.namespace = serde_json::from_value(ns).unwrap();
            }
            Action::Apply { object, .. } => {
                let i = d.objects.iter().position(|o| o == object).unwrap();
                let mut live = object.clone();
                live["metadata"]["resourceVersion"] = json!("7");
                obs.objects[i] = Some(live);
            }
            Action::PatchDeployment { patch, .. } => {
                let mut dep = serde_json::to_value(&obs.deployments[0]).unwrap();
                merge(&mut dep, patch);
                obs.deployments[0] = serde_json::from_value(dep).unwrap();
            }
            Action::Delete { .. } => unreachable!(),
        }
    }
    obs
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[test]
fn version_parsing() {
    let info = |major: &str, minor: &str, git: &str| Info {
        major: major.into(),
        minor: minor.into(),
        git_version: git.into(),
        ..Default::default()
    };
    assert_eq!(parse_version(&info("1", "16+", "")), Some((1, 16)));
    assert_eq!(
        parse_version(&info("", "", "v1.15.12-gke.2")),
        Some((1, 15))
    );
    assert_eq!(parse_version(&info("", "", "garbage")), None);
    assert!((1, 15) < MIN_KUBERNETES && (1, 16) >= MIN_KUBERNETES && (2, 0) > MIN_KUBERNETES);
}

#[test]
fn first_run_does_everything_second_run_nothing() {
    let d = desired(Context::SidecarInbound);
    let obs = Observed {
        namespace: namespace(&[], &[]),
        objects: vec![None; d.objects.len()],
        deployments: vec![deployment(BTreeMap::new())],
        managed: vec![],
        ossm: false,
    };
    let plan = plan_enable(&d, "ns", "app=web", &obs, "t0").unwrap();
    assert_eq!(plan.len(), 1 + d.objects.len() + 1, "{plan:#?}");
    assert!(matches!(&plan[0], Action::PatchNamespace { .. }));
    let obs = converge(&d, obs, &plan);
    let again = plan_enable(&d, "ns", "app=web", &obs, "t1").unwrap();
    assert_eq!(again, vec![], "second run must change nothing");
}

#[test]
fn existing_rev_label_is_kept_and_not_recorded() {
    let d = desired(Context::SidecarInbound);
    let obs = Observed {
        namespace: namespace(&[(REV_LABEL, "canary")], &[]),
        objects: vec![None; d.objects.len()],
        deployments: vec![deployment(BTreeMap::new())],
        managed: vec![],
        ossm: false,
    };
    let plan = plan_enable(&d, "ns", "app=web", &obs, "t0").unwrap();
    assert!(
        !plan
            .iter()
            .any(|a| matches!(a, Action::PatchNamespace { .. })),
        "{plan:#?}"
    );
}

#[test]
fn injection_disabled_is_an_error() {
    let d = desired(Context::SidecarInbound);
    let obs = Observed {
        namespace: namespace(&[(INJECTION_LABEL, "disabled")], &[]),
        objects: vec![None; d.objects.len()],
        deployments: vec![deployment(BTreeMap::new())],
        managed: vec![],
        ossm: false,
    };
    assert!(matches!(
        plan_enable(&d, "ns", "app=web", &obs, "t0"),
        Err(PlanError::InjectionDisabled(_))
    ));
}

#[test]
fn restart_only_when_template_unchanged_but_label_new() {
    let d = desired(Context::SidecarInbound);
    let obs = Observed {
        namespace: namespace(&[], &[]),
        objects: d.objects.iter().cloned().map(Some).collect(),
        deployments: vec![set_up(&d)],
        managed: vec![],
        ossm: false,
    };
    let plan = plan_enable(&d, "ns", "app=web", &obs, "2026-01-01T00:00:00Z").unwrap();
    let Action::PatchDeployment { patch, .. } = plan.last().unwrap() else {
        panic!("{plan:#?}")
    };
    assert_eq!(
        patch["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION],
        "2026-01-01T00:00:00Z"
    );
}

#[test]
fn changed_object_is_reapplied() {
    let d = desired(Context::SidecarInbound);
    let mut stale = d.objects[1].clone();
    stale["spec"]["configPatches"][0]["patch"]["operation"] = json!("INSERT_AFTER");
    let obs = Observed {
        namespace: namespace(&[(INJECTION_LABEL, "enabled")], &[]),
        objects: vec![Some(d.objects[0].clone()), Some(stale)],
        deployments: vec![set_up(&d)],
        managed: vec![],
        ossm: false,
    };
    let plan = plan_enable(&d, "ns", "app=web", &obs, "t").unwrap();
    assert_eq!(plan.len(), 1);
    assert!(matches!(&plan[0], Action::Apply { exists: true, .. }));
}

/// The digimon-like config with `max_age` as the CORS maxAge, rendered for the inbound sidecar
/// with `module`.
fn desired_config(max_age: u32, module: Module) -> Rendered {
    let cfg = crate::render::parse_config(
        "t.yaml",
        &format!("apiVersion: kubectl-mesh/v1alpha1\nkind: MeshConfig\nhosts:\n- domains: ['*']\n  cors: {{allowOrigins: [{{exact: 'http://a'}}], maxAge: {max_age}}}\n  routes:\n  - to: {{service: web, port: 80}}\n"),
    )
    .unwrap();
    let opts = crate::render::RenderOptions {
        name: "kubectl-mesh".into(),
        namespace: "ns".into(),
        selector: BTreeMap::from([("app".into(), "web".into())]),
        context: Context::SidecarInbound,
        api: Api::Envoyfilter,
        module,
        gateway_deployment: "gw".into(),
        gateway: Default::default(),
        source: "t.yaml".into(),
        istio_version: crate::render::NEWEST_ISTIO,
    };
    render(&cfg, &opts).unwrap()
}

#[test]
fn a_config_edit_changes_the_filter_only_and_a_new_module_rolls_the_pods() {
    let module = || Module::ConfigMap(vec![0, 97, 115, 109]);
    let before = desired_config(60, module());
    let obs = Observed {
        namespace: namespace(&[(INJECTION_LABEL, "enabled")], &[]),
        objects: before.objects.iter().cloned().map(Some).collect(),
        deployments: vec![set_up(&before)],
        managed: vec![],
        ossm: false,
    };
    let edited = desired_config(1728, module());
    let plan = plan_enable(&edited, "ns", "app=web", &obs, "t").unwrap();
    let kinds: Vec<String> = plan.iter().map(ToString::to_string).collect();
    assert_eq!(
        kinds,
        ["EnvoyFilter ns/kubectl-mesh: update (server-side apply)"],
        "the config reaches the proxies in the EnvoyFilter; the pods stay"
    );
    // Another module: the ConfigMap and the pods' template (they load it at start).
    let rebuilt = desired_config(60, Module::ConfigMap(vec![0, 97, 115, 109, 1]));
    let plan = plan_enable(&rebuilt, "ns", "app=web", &obs, "t").unwrap();
    let Some(Action::PatchDeployment { patch, summary, .. }) = plan.last() else {
        panic!("{plan:#?}")
    };
    assert!(summary.contains("pods roll"), "{summary}");
    assert_eq!(
        patch["spec"]["template"]["metadata"]["annotations"][MODULE_SHA_ANNOTATION],
        crate::module::sha256_hex(&[0, 97, 115, 109, 1])
    );
    // A template an earlier version left with the config hash: removed, once.
    let mut old = set_up(&before);
    if let Some(m) = old.spec.template.metadata.as_mut() {
        m.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(CONFIG_HASH_ANNOTATION.into(), "0123".into());
    }
    let obs = Observed {
        deployments: vec![old],
        ..obs
    };
    let plan = plan_enable(&before, "ns", "app=web", &obs, "t").unwrap();
    let Some(Action::PatchDeployment { patch, .. }) = plan.last() else {
        panic!("{plan:#?}")
    };
    assert_eq!(
        patch["spec"]["template"]["metadata"]["annotations"],
        json!({ CONFIG_HASH_ANNOTATION: null })
    );
    let obs = converge(&before, obs, &plan);
    assert_eq!(
        plan_enable(&before, "ns", "app=web", &obs, "t").unwrap(),
        []
    );
}

#[test]
fn foreign_user_volume_is_refused() {
    let d = desired(Context::SidecarInbound);
    let obs = Observed {
        namespace: namespace(&[(INJECTION_LABEL, "enabled")], &[]),
        objects: vec![None; 2],
        deployments: vec![deployment(BTreeMap::from([(
            USER_VOLUME_ANNOTATION.to_owned(),
            r#"[{"name":"certs"}]"#.to_owned(),
        )]))],
        managed: vec![],
        ossm: false,
    };
    assert!(matches!(
        plan_enable(&d, "ns", "app=web", &obs, "t"),
        Err(PlanError::UserVolumeTaken(..))
    ));
}

#[test]
fn no_matching_deployment_is_an_error() {
    let d = desired(Context::SidecarInbound);
    let obs = Observed {
        namespace: namespace(&[(INJECTION_LABEL, "enabled")], &[]),
        objects: vec![None; 2],
        deployments: vec![],
        managed: vec![],
        ossm: false,
    };
    let e = plan_enable(&d, "ns", "app=web", &obs, "t").unwrap_err();
    assert!(e.to_string().contains("app=web"), "{e}");
}

#[test]
fn gateway_mount_is_patched_once() {
    let d = desired(Context::Gateway);
    let obs = Observed {
        namespace: namespace(&[], &[]),
        objects: d.objects.iter().cloned().map(Some).collect(),
        deployments: vec![set_up(&d)],
        managed: vec![],
        ossm: false,
    };
    let plan = plan_enable(&d, "ns", "istio=ingressgateway", &obs, "t").unwrap();
    assert_eq!(plan.len(), 1, "gateways get no namespace label: {plan:#?}");
    let Action::PatchDeployment { patch, .. } = &plan[0] else {
        panic!()
    };
    assert_eq!(
        patch["spec"]["template"]["spec"]["volumes"][0]["name"],
        VOLUME_NAME
    );
}

#[test]
fn switching_api_and_delivery_removes_what_is_no_longer_needed() {
    let before = desired(Context::SidecarInbound);
    let remote = Module::Remote {
        url: "https://x/m.wasm".into(),
        sha256: "a".repeat(64),
        pull: Default::default(),
    };
    let after = desired_with(Context::SidecarInbound, Api::Wasmplugin, remote);
    let mut other = before.objects[1].clone();
    other["metadata"]["name"] = json!("another-instance");
    let mut managed = before.objects.clone();
    managed.push(other);
    let obs = Observed {
        namespace: namespace(&[(INJECTION_LABEL, "enabled")], &[]),
        objects: vec![None; after.objects.len()],
        deployments: vec![set_up(&before)],
        managed,
        ossm: false,
    };
    let plan = plan_enable(&after, "ns", "app=web", &obs, "t").unwrap();
    let kinds: Vec<String> = plan
        .iter()
        .map(|a| match a {
            Action::Apply { object, .. } => {
                format!("apply {}", object["kind"].as_str().unwrap())
            }
            Action::Delete { kind, name, .. } => format!("delete {kind} {name}"),
            Action::PatchDeployment { .. } => "deployment".into(),
            Action::PatchNamespace { .. } => "namespace".into(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "apply WasmPlugin",
            "apply EnvoyFilter",
            "delete EnvoyFilter kubectl-mesh",
            "deployment",
            "delete ConfigMap kubectl-mesh-filter"
        ],
        "another instance's objects stay"
    );
    let Action::PatchDeployment { patch, .. } = &plan[3] else {
        panic!()
    };
    let ann = &patch["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        ann[USER_VOLUME_ANNOTATION],
        Value::Null,
        "no mount of the deleted ConfigMap: {ann}"
    );
    assert_eq!(ann[USER_VOLUME_MOUNT_ANNOTATION], Value::Null);
    assert_eq!(
        ann[MODULE_SHA_ANNOTATION],
        Value::Null,
        "no module to roll for: {ann}"
    );
}

#[test]
fn disable_removes_only_what_was_added() {
    let d = desired(Context::SidecarInbound);
    // The user had their own label and annotation; only ours are recorded.
    let ns = namespace(
        &[(INJECTION_LABEL, "enabled"), ("team", "a")],
        &[(ADDED_LABELS_ANNOTATION, INJECTION_LABEL)],
    );
    let mut dep = set_up(&d);
    if let Some(m) = dep.spec.template.metadata.as_mut() {
        m.annotations
            .get_or_insert_default()
            .insert("user/own".into(), "keep".into());
        m.labels
            .get_or_insert_default()
            .insert("app".into(), "web".into());
    }
    let plan = plan_disable(&ns, &d.objects, &[dep], "kubectl-mesh");
    assert_eq!(plan.len(), 4, "{plan:#?}");
    assert!(matches!(&plan[0], Action::Delete { kind, .. } if kind == "EnvoyFilter"));
    assert!(matches!(&plan[1], Action::Delete { kind, .. } if kind == "ConfigMap"));
    let Action::PatchDeployment { patch, .. } = &plan[2] else {
        panic!()
    };
    let removed = patch["spec"]["template"]["metadata"]["annotations"]
        .as_object()
        .unwrap();
    assert!(!removed.contains_key("user/own"));
    assert_eq!(removed.len(), 3);
    assert_eq!(
        patch["spec"]["template"]["metadata"]["labels"],
        json!({ FILTER_LABEL: null }),
        "only our label goes"
    );
    let Action::PatchNamespace { patch, .. } = &plan[3] else {
        panic!()
    };
    assert_eq!(
        patch["metadata"]["labels"],
        json!({ INJECTION_LABEL: null })
    );

    // A namespace whose label the user set themselves keeps it.
    let users = namespace(&[(INJECTION_LABEL, "enabled")], &[]);
    let plan = plan_disable(&users, &[], &[], "kubectl-mesh");
    assert_eq!(plan, vec![]);
}

/// Two enables in one namespace (`--name a`, `--name b`): disabling one leaves the other's
/// objects, Deployments and the injection label it still needs.
#[test]
fn disable_removes_one_instance_by_name() {
    let a = desired(Context::SidecarInbound);
    let mut b_objects = a.objects.clone();
    for o in &mut b_objects {
        let n = o["metadata"]["name"]
            .as_str()
            .unwrap()
            .replace("kubectl-mesh", "other");
        o["metadata"]["name"] = json!(n);
    }
    let ns = namespace(
        &[(INJECTION_LABEL, "enabled")],
        &[(ADDED_LABELS_ANNOTATION, INJECTION_LABEL)],
    );
    let mine = set_up(&a);
    let mut theirs = set_up(&a);
    theirs.metadata.name = Some("api".into());
    if let Some(m) = theirs.spec.template.metadata.as_mut() {
        m.labels = Some(BTreeMap::from([(FILTER_LABEL.into(), "other".into())]));
    }
    let untouched = deployment(BTreeMap::new());
    let managed: Vec<Value> = a.objects.iter().chain(&b_objects).cloned().collect();
    let plan = plan_disable(&ns, &managed, &[mine, theirs, untouched], "kubectl-mesh");
    let lines: Vec<String> = plan.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "EnvoyFilter ns/kubectl-mesh: delete",
            "ConfigMap ns/kubectl-mesh-filter: delete",
            "Deployment ns/web: remove kubectl-mesh annotations and mounts (pods roll)",
        ],
        "the other instance keeps its objects, its Deployment and the injection label"
    );
    // The last one out removes the label too.
    let plan = plan_disable(&ns, &b_objects, &[], "other");
    assert!(
        matches!(plan.last(), Some(Action::PatchNamespace { .. })),
        "{plan:#?}"
    );
}

#[test]
fn native_sidecars_count_as_the_proxy() {
    let container = |name: &str, restart: Option<&str>| Container {
        name: name.into(),
        restart_policy: restart.map(Into::into),
        volume_mounts: Some(vec![k8s_openapi::api::core::v1::VolumeMount {
            name: VOLUME_NAME.into(),
            mount_path: crate::render::MODULE_DIR.into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let volume = k8s_openapi::api::core::v1::Volume {
        name: VOLUME_NAME.into(),
        ..Default::default()
    };
    // Istio 1.27+ on Kubernetes 1.33+: istio-proxy is an init container that keeps running.
    let native = PodSpec {
        containers: vec![container("app", None)],
        init_containers: Some(vec![
            container("istio-validation", None),
            container(PROXY_CONTAINER, Some("Always")),
        ]),
        volumes: Some(vec![volume.clone()]),
        ..Default::default()
    };
    assert_eq!(
        proxy_container(&native).map(|c| c.name.as_str()),
        Some(PROXY_CONTAINER)
    );
    assert!(mounts_module(&native));
    // A plain init container of that name is not a sidecar.
    let init_only = PodSpec {
        containers: vec![container("app", None)],
        init_containers: Some(vec![container(PROXY_CONTAINER, None)]),
        volumes: Some(vec![volume]),
        ..Default::default()
    };
    assert!(proxy_container(&init_only).is_none());
    assert!(!mounts_module(&init_only));
}

/// OpenShift Service Mesh 2.x ignores the namespace label: the pods ask for the sidecar by
/// annotation, recorded so that disable removes it, and a pod that said no is not overridden.
#[test]
fn ossm_injects_by_pod_annotation_and_disable_removes_it() {
    let d = desired(Context::SidecarInbound);
    let obs = Observed {
        namespace: namespace(&[], &[]),
        objects: vec![None; d.objects.len()],
        deployments: vec![deployment(BTreeMap::new())],
        managed: vec![],
        ossm: true,
    };
    let plan = plan_enable(&d, "ns", "app=web", &obs, "t").unwrap();
    assert!(
        !plan
            .iter()
            .any(|a| matches!(a, Action::PatchNamespace { .. })),
        "no namespace label: {plan:#?}"
    );
    let Some(Action::PatchDeployment { patch, .. }) = plan.last() else {
        panic!("{plan:#?}")
    };
    let ann = &patch["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann[INJECT_ANNOTATION], "true");
    assert_eq!(ann[ADDED_ANNOTATIONS], INJECT_ANNOTATION);
    let obs = converge(&d, obs, &plan);
    assert_eq!(plan_enable(&d, "ns", "app=web", &obs, "t").unwrap(), []);
    let undo = plan_disable(&obs.namespace, &d.objects, &obs.deployments, "kubectl-mesh");
    let Some(Action::PatchDeployment { patch, .. }) = undo
        .iter()
        .find(|a| matches!(a, Action::PatchDeployment { .. }))
    else {
        panic!("{undo:#?}")
    };
    let removed = &patch["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(removed[INJECT_ANNOTATION], Value::Null);
    assert!(removed.as_object().unwrap().contains_key(INJECT_ANNOTATION));
    assert!(removed.as_object().unwrap().contains_key(ADDED_ANNOTATIONS));
    // A workload that opted out keeps its choice.
    let mut no = obs.clone();
    no.deployments = vec![deployment(BTreeMap::from([(
        INJECT_ANNOTATION.to_owned(),
        "false".to_owned(),
    )]))];
    assert!(matches!(
        plan_enable(&d, "ns", "app=web", &no, "t"),
        Err(PlanError::PodInjectionDisabled(_))
    ));
}
