//! The names kubectl-mesh gives things in a cluster: labels, annotations, object names, the
//! module's path in the proxy. A leaf module: every layer (render, plan, enable, check,
//! disable) reads them from here.

use serde_json::{json, Value};

/// Label every object kubectl-mesh creates carries, so `check` and `disable` can find them.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`], and the server-side apply field manager.
pub const MANAGER: &str = "kubectl-mesh";
/// Annotation on the filter objects: digest of config + module. The filter reports the same
/// digest from each proxy (`mesh_filter_config_revision`), so `check` can tell which proxies run
/// the applied config. Pod templates no longer carry it: a config edit reaches the proxies
/// live and restarts nothing.
pub const CONFIG_HASH_ANNOTATION: &str = "kubectl-mesh/config-hash";
/// Pod label `enable` puts on the workloads it set up (value: the instance `--name`); the filter
/// objects select it too, so a pod gets the filter only once it has the module.
pub const FILTER_LABEL: &str = "kubectl-mesh/filter";
/// Annotation on the module ConfigMap, and on the pod templates mounting it: sha256 of the
/// module. A new module rolls the pods (they load it at start); a config edit does not.
pub const MODULE_SHA_ANNOTATION: &str = "kubectl-mesh/module-sha256";
/// Pod template annotation listing the template annotations `enable` added that were not
/// kubectl-mesh's own (OpenShift Service Mesh's `sidecar.istio.io/inject`), so `disable`
/// removes those and leaves the user's.
pub const ADDED_ANNOTATIONS: &str = "kubectl-mesh/added-annotations";
/// Istio's pod annotation adding volumes to the sidecar (JSON array of Volumes).
pub const USER_VOLUME_ANNOTATION: &str = "sidecar.istio.io/userVolume";
/// Istio's pod annotation adding mounts to the sidecar (JSON array of VolumeMounts).
pub const USER_VOLUME_MOUNT_ANNOTATION: &str = "sidecar.istio.io/userVolumeMount";
/// Istio's per-pod injection switch: what OpenShift Service Mesh 2.x reads instead of the
/// namespace label.
pub const INJECT_ANNOTATION: &str = "sidecar.istio.io/inject";
/// Directory the module is mounted at inside `istio-proxy`.
pub const MODULE_DIR: &str = "/var/local/kubectl-mesh";
/// File name of the module in the ConfigMap and in [`MODULE_DIR`].
pub const MODULE_FILE: &str = "mesh_filter.wasm";
/// Name of the pod volume holding the module.
pub const VOLUME_NAME: &str = "kubectl-mesh-filter";
/// The container Istio injects; the module is mounted into it.
pub const PROXY_CONTAINER: &str = "istio-proxy";
/// The pod label istiod gives a Kubernetes Gateway API gateway's pods (its Gateway's name).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// The Gateway API group.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// Name of the ConfigMap holding the module of instance `name`.
pub fn configmap_name(name: &str) -> String {
    format!("{name}-filter")
}

/// Name of the EnvoyFilter carrying only the route (for the extensions.istio.io APIs).
pub fn route_filter_name(name: &str) -> String {
    format!("{name}-route")
}

/// Every object name instance `name` may own (the filter object, the route filter, the
/// module's ConfigMap; the Gateway, VirtualService or HTTPRoute are named like the filter).
pub fn owned_names(name: &str) -> Vec<String> {
    vec![
        name.to_owned(),
        route_filter_name(name),
        configmap_name(name),
    ]
}

/// Label on the objects `enable` renders: the config's `namespace` (the app's). A gateway's
/// objects live in the gateway's namespace; `check` and `disable` without `-n`, run from the
/// app's namespace, find them by it.
pub const CONFIG_NAMESPACE_LABEL: &str = "kubectl-mesh/config-namespace";

/// Object metadata: name, namespace, the managed-by and config-namespace labels and the config
/// hash.
pub fn meta(name: &str, namespace: &str, hash: &str, config_namespace: &str) -> Value {
    json!({
        "name": name,
        "namespace": namespace,
        "labels": { MANAGED_BY_LABEL: MANAGER, CONFIG_NAMESPACE_LABEL: config_namespace },
        "annotations": { CONFIG_HASH_ANNOTATION: hash },
    })
}

/// The module's path inside `istio-proxy`.
pub fn module_path() -> String {
    format!("{MODULE_DIR}/{MODULE_FILE}")
}
