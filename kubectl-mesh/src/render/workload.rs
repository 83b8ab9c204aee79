//! What the workloads get: the module's ConfigMap, and the pod-template changes that mount it
//! (Istio's user-volume annotations for injected sidecars; the volume and mount themselves for
//! a gateway Deployment, which the annotations do not reach).

use super::Rendered;
use crate::delivery::Module;
use crate::names::{
    configmap_name, MANAGED_BY_LABEL, MANAGER, MODULE_DIR, MODULE_FILE, MODULE_SHA_ANNOTATION,
    PROXY_CONTAINER, USER_VOLUME_ANNOTATION, USER_VOLUME_MOUNT_ANNOTATION, VOLUME_NAME,
};
use crate::options::RenderOptions;
use crate::output::{value, SerializeError};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The module's delivery by ConfigMap: the object, and how pods mount it.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The ConfigMap holding the module.
    pub configmap: Value,
    /// Pod template annotations: the module's sha, and for sidecars Istio's user-volume
    /// annotations.
    pub annotations: BTreeMap<String, String>,
    /// A gateway: the pod-spec part of its Deployment patch (volume and mount), as JSON.
    pub gateway_pod_spec: Option<Value>,
}

/// The ConfigMap and the mount of `bytes` for `opts`; `None` for a module istio-agent
/// downloads.
pub fn mount(opts: &RenderOptions, sidecar: bool) -> Result<Option<Mount>, SerializeError> {
    let Module::ConfigMap(bytes) = &opts.module else {
        return Ok(None);
    };
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(configmap_name(&opts.name)),
            namespace: Some(opts.namespace.clone()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGER.to_owned(),
            )])),
            // The module's own digest, not the config hash: editing the config must not
            // rewrite a 1 MiB ConfigMap.
            annotations: Some(BTreeMap::from([(
                MODULE_SHA_ANNOTATION.to_owned(),
                crate::module::sha256_hex(bytes),
            )])),
            ..Default::default()
        },
        binary_data: Some(BTreeMap::from([(
            MODULE_FILE.to_owned(),
            ByteString(bytes.clone()),
        )])),
        ..Default::default()
    };
    let volume = Volume {
        name: VOLUME_NAME.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: configmap_name(&opts.name),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mount = VolumeMount {
        name: VOLUME_NAME.to_owned(),
        mount_path: MODULE_DIR.to_owned(),
        read_only: Some(true),
        ..Default::default()
    };
    // The pods load the module at start: a new one must roll them.
    let mut annotations = BTreeMap::from([(
        MODULE_SHA_ANNOTATION.to_owned(),
        crate::module::sha256_hex(bytes),
    )]);
    let mut gateway_pod_spec = None;
    if sidecar {
        // Istio's injection template ranges over these as a JSON object and writes
        // `- name: KEY` followed by the value, so the name is the key and not repeated.
        annotations.insert(
            USER_VOLUME_ANNOTATION.to_owned(),
            user_volume_json(value("the module's volume", &volume)?),
        );
        annotations.insert(
            USER_VOLUME_MOUNT_ANNOTATION.to_owned(),
            user_volume_json(value("the module's volume mount", &mount)?),
        );
    } else {
        // Gateways are not injected as sidecars are, so the user-volume annotations are
        // ignored there: the gateway Deployment itself gets the volume and the mount.
        let spec = PodSpec {
            volumes: Some(vec![volume]),
            containers: vec![Container {
                name: PROXY_CONTAINER.to_owned(),
                volume_mounts: Some(vec![mount]),
                ..Default::default()
            }],
            ..Default::default()
        };
        gateway_pod_spec = Some(value("the gateway's pod spec", &spec)?);
    }
    Ok(Some(Mount {
        configmap: value("the module's ConfigMap", &cm)?,
        annotations,
        gateway_pod_spec,
    }))
}

/// `{"NAME": {...rest}}`: the userVolume/userVolumeMount annotation form for one item.
fn user_volume_json(mut item: Value) -> String {
    let name = item
        .as_object_mut()
        .and_then(|m| m.remove("name"))
        .and_then(|n| n.as_str().map(str::to_owned))
        .unwrap_or_default();
    json!({ name: item }).to_string()
}

/// Parses a userVolume/userVolumeMount annotation the way Istio's injection template reads it:
/// each key becomes the `name` of the item.
pub fn parse_user_volumes(text: &str) -> Result<Vec<Value>, serde_json::Error> {
    let map: serde_json::Map<String, Value> = serde_json::from_str(text)?;
    Ok(map
        .into_iter()
        .map(|(name, mut v)| {
            v["name"] = Value::String(name);
            v
        })
        .collect())
}

/// The strategic-merge patch of a Deployment's pod template, as a printable object.
pub fn deployment_patch(name: &str, namespace: &str, r: &Rendered) -> Value {
    let mut template = json!({ "metadata": {} });
    if !r.pod_labels.is_empty() {
        template["metadata"]["labels"] = json!(r.pod_labels);
    }
    if !r.pod_annotations.is_empty() {
        template["metadata"]["annotations"] = json!(r.pod_annotations);
    }
    if let Some(spec) = &r.gateway_pod_spec {
        template["spec"] = spec.clone();
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": namespace },
        "spec": { "template": template },
    })
}
