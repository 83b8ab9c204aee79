//! Thin async I/O against the Kubernetes API (kube-rs); every decision lives in `plan` and `check`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;
use std::path::Path;

/// Why a call to the cluster failed; messages say what to check.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No usable kubeconfig.
    #[error("cannot load the kubeconfig{from}\n  fix: pass --kubeconfig FILE or set KUBECONFIG, and --context NAME if needed")]
    Config {
        /// ` FILE` when a file was named, else empty.
        from: String,
        /// What kube's loader said.
        #[source]
        source: BoxError,
    },
    /// The API server did not answer.
    #[error("cannot reach the Kubernetes API at {url} ({what})\n  fix: check that the cluster is up and that --kubeconfig/--context point at it")]
    Unreachable {
        /// Server URL from the kubeconfig.
        url: String,
        /// What was being done.
        what: String,
        /// The transport error, with its causes (a refused connection, a TLS failure).
        #[source]
        source: kube::Error,
    },
    /// The API server refused the request.
    #[error("{what}: the API server answered {code} {reason}: {message}")]
    Api {
        /// What was being done.
        what: String,
        /// HTTP status.
        code: u16,
        /// Kubernetes reason (`Forbidden`, `Conflict`, ...).
        reason: String,
        /// The server's message.
        message: String,
    },
    /// The server's answer could not be turned back into JSON (a bug).
    #[error(transparent)]
    Answer(#[from] crate::output::SerializeError),
    /// A rendered object lacks apiVersion/kind/name (a bug in render).
    #[error("object without apiVersion, kind or metadata.name: {0}")]
    BadObject(String),
    /// A raw request could not be built (a name that is not a valid URL path).
    #[error("cannot build the request for {what}")]
    Request {
        /// What was being done.
        what: String,
        /// The builder's error.
        #[source]
        source: http::Error,
    },
}

/// A cause of any type, kept for the error chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl ClusterError {
    /// HTTP status for API errors.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClusterError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A connected client plus the URL it talks to (for messages).
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    /// For reads through the pod proxy: no retries (kube retries a 503 up to 15 times with
    /// growing delays, and a pod port that refuses answers 503) and a shorter timeout.
    probe: Client,
    url: String,
}

/// The plural resource name of each kind kubectl-mesh writes.
pub fn plural(kind: &str) -> String {
    match kind {
        "ConfigMap" => "configmaps".into(),
        "EnvoyFilter" => "envoyfilters".into(),
        "WasmPlugin" => "wasmplugins".into(),
        "TrafficExtension" => "trafficextensions".into(),
        "Deployment" => "deployments".into(),
        other => format!("{}s", other.to_ascii_lowercase()),
    }
}

fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural(kind))
}

/// `(apiVersion, kind, namespace, name)` of a rendered object.
pub fn identity(obj: &Value) -> Result<(String, String, String, String), ClusterError> {
    let s = |v: &Value| v.as_str().map(str::to_owned);
    match (
        s(&obj["apiVersion"]),
        s(&obj["kind"]),
        s(&obj["metadata"]["name"]),
    ) {
        (Some(a), Some(k), Some(n)) => Ok((
            a,
            k,
            s(&obj["metadata"]["namespace"]).unwrap_or_default(),
            n,
        )),
        _ => Err(ClusterError::BadObject(obj.to_string())),
    }
}

/// `params` with the API server's dry run (`dryRun=All`) when asked.
fn params(mut params: PatchParams, dry_run: bool) -> PatchParams {
    params.dry_run = dry_run;
    params
}

/// `obj` with its apiVersion and kind (the server's typed answers may leave them out).
fn with_kind(mut obj: Value, api_version: &str, kind: &str) -> Value {
    if obj.is_object() {
        obj["apiVersion"] = Value::from(api_version);
        obj["kind"] = Value::from(kind);
    }
    obj
}

/// The server's answer as JSON, with its apiVersion and kind.
fn answer(o: &impl serde::Serialize, api_version: &str, kind: &str) -> Result<Value, ClusterError> {
    let v = crate::output::value("the API server's answer", o)?;
    Ok(with_kind(v, api_version, kind))
}

/// Connects using `--kubeconfig`/`KUBECONFIG`/`~/.kube/config` and `--context`, like kubectl.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Cluster, ClusterError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| ClusterError::Config {
                from: format!(" {}", path.display()),
                source: e.into(),
            })?;
            Config::from_custom_kubeconfig(kc, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| ClusterError::Config {
        from: String::new(),
        source: e.into(),
    })?;
    let mut config = config;
    // kube waits forever for an answer by default; a hung API server must end in an error
    // (and a report of what was applied) rather than a hung kubectl.
    config.read_timeout = Some(std::time::Duration::from_secs(30));
    let url = config.cluster_url.to_string();
    let mut probe = config.clone();
    probe.default_retry = false;
    probe.read_timeout = Some(std::time::Duration::from_secs(10));
    let config_error = |e: kube::Error| ClusterError::Config {
        from: String::new(),
        source: e.into(),
    };
    let client = Client::try_from(config).map_err(config_error)?;
    let probe = Client::try_from(probe).map_err(config_error)?;
    Ok(Cluster { client, probe, url })
}

impl Cluster {
    fn err(&self, what: impl Into<String>, e: kube::Error) -> ClusterError {
        match e {
            kube::Error::Api(status) => ClusterError::Api {
                what: what.into(),
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            other => ClusterError::Unreachable {
                url: self.url.clone(),
                what: what.into(),
                source: other,
            },
        }
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The kubeconfig context's namespace (or `default`).
    pub fn default_namespace(&self) -> &str {
        self.client.default_namespace()
    }

    /// Whether the user may do `verb` on `resource` (`group`, with `subresource`), in
    /// `namespace` (`""`: cluster-wide) and on `name` (`""`: any): the API server's answer to a
    /// SelfSubjectAccessReview, which every authenticated user may ask.
    pub async fn can(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<bool, ClusterError> {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        };
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: some(verb),
                    group: Some(group.to_owned()),
                    resource: some(resource),
                    subresource: some(subresource),
                    namespace: some(namespace),
                    name: some(name),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let what = format!("asking whether you may {verb} {resource}");
        api.create(&kube::api::PostParams::default(), &review)
            .await
            .map(|r| r.status.is_some_and(|s| s.allowed))
            .map_err(|e| self.err(what, e))
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<Info, ClusterError> {
        self.client
            .apiserver_version()
            .await
            .map_err(|e| self.err("reading the server version", e))
    }

    /// Versions the server serves for an API group (empty when the group is not installed).
    pub async fn served_versions(&self, group: &str) -> Result<Vec<String>, ClusterError> {
        let groups = self
            .client
            .list_api_groups()
            .await
            .map_err(|e| self.err("listing API groups", e))?;
        Ok(groups
            .groups
            .into_iter()
            .filter(|g| g.name == group)
            .flat_map(|g| g.versions.into_iter().map(|v| v.version))
            .collect())
    }

    /// Resource names served by one group version (`networking.istio.io/v1alpha3`); empty on 404.
    pub async fn resources(&self, api_version: &str) -> Result<Vec<String>, ClusterError> {
        match self.client.list_api_group_resources(api_version).await {
            Ok(list) => Ok(list.resources.into_iter().map(|r| r.name).collect()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
            Err(e) => Err(self.err(format!("discovering {api_version}"), e)),
        }
    }

    /// The namespace, or `None` when it does not exist.
    pub async fn namespace(&self, name: &str) -> Result<Option<Namespace>, ClusterError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.get_opt(name)
            .await
            .map_err(|e| self.err(format!("reading namespace {name}"), e))
    }

    /// JSON merge patch of a namespace (labels, annotations); the namespace as the server
    /// answered (with `dry_run`, as it would be: the API server's dry run, nothing stored).
    pub async fn patch_namespace(
        &self,
        name: &str,
        patch: &Value,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.patch(
            name,
            &params(PatchParams::default(), dry_run),
            &Patch::Merge(patch),
        )
        .await
        .map_err(|e| self.err(format!("patching namespace {name}"), e))
        .and_then(|o| answer(&o, "v1", "Namespace"))
    }

    fn dynamic(&self, api_version: &str, kind: &str, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &resource(api_version, kind))
    }

    /// The live version of a rendered object, or `None`.
    pub async fn get_object(&self, obj: &Value) -> Result<Option<Value>, ClusterError> {
        tracing::debug!(
            "read {} {}/{}",
            obj["kind"].as_str().unwrap_or("?"),
            obj["metadata"]["namespace"].as_str().unwrap_or(""),
            obj["metadata"]["name"].as_str().unwrap_or("?")
        );
        let (av, kind, ns, name) = identity(obj)?;
        let found = self
            .dynamic(&av, &kind, &ns)
            .get_opt(&name)
            .await
            .map_err(|e| self.err(format!("reading {kind} {ns}/{name}"), e))?;
        Ok(found.and_then(|o| serde_json::to_value(o).ok()))
    }

    /// Server-side apply with field manager `kubectl-mesh`; the object as the server answered
    /// (with `dry_run`, the API server's dry run: validated and admitted, nothing stored).
    pub async fn apply(&self, obj: &Value, dry_run: bool) -> Result<Value, ClusterError> {
        tracing::debug!(
            "server-side apply {} {}/{}",
            obj["kind"].as_str().unwrap_or("?"),
            obj["metadata"]["namespace"].as_str().unwrap_or(""),
            obj["metadata"]["name"].as_str().unwrap_or("?")
        );
        let (av, kind, ns, name) = identity(obj)?;
        let params = params(PatchParams::apply(crate::names::MANAGER).force(), dry_run);
        self.dynamic(&av, &kind, &ns)
            .patch(&name, &params, &Patch::Apply(obj))
            .await
            .map_err(|e| self.err(format!("applying {kind} {ns}/{name}"), e))
            .and_then(|o| answer(&o, &av, &kind))
    }

    /// Objects of a kind labelled as ours; an uninstalled kind lists as empty.
    pub async fn list_managed(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
    ) -> Result<Vec<Value>, ClusterError> {
        let selector = format!(
            "{}={}",
            crate::names::MANAGED_BY_LABEL,
            crate::names::MANAGER
        );
        let listed = self
            .dynamic(api_version, kind, ns)
            .list(&ListParams::default().labels(&selector))
            .await;
        self.values(listed, api_version, kind, || {
            format!("listing {kind} in {ns}")
        })
    }

    /// Objects of a kind in every namespace matching a label selector; an uninstalled kind
    /// lists as empty.
    pub async fn list_everywhere(
        &self,
        api_version: &str,
        kind: &str,
        selector: &str,
    ) -> Result<Vec<Value>, ClusterError> {
        let api: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &resource(api_version, kind));
        let listed = api.list(&ListParams::default().labels(selector)).await;
        self.values(listed, api_version, kind, || {
            format!("listing {kind} labelled {selector} in all namespaces")
        })
    }

    /// Objects of a kind in every namespace; an uninstalled kind lists as empty.
    pub async fn list_all(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Vec<Value>, ClusterError> {
        let api: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &resource(api_version, kind));
        let listed = api.list(&ListParams::default()).await;
        self.values(listed, api_version, kind, || {
            format!("listing {kind} in all namespaces")
        })
    }

    /// A list's items as JSON, each with its apiVersion and kind (the API server leaves them
    /// out of a list's items for built-in kinds such as ConfigMap, and callers tell objects
    /// apart by kind); 404 (the kind is not installed) lists as empty.
    fn values(
        &self,
        listed: Result<kube::api::ObjectList<DynamicObject>, kube::Error>,
        api_version: &str,
        kind: &str,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<Value>, ClusterError> {
        match listed {
            Ok(list) => Ok(list
                .items
                .into_iter()
                .filter_map(|o| serde_json::to_value(o).ok())
                .map(|mut o| {
                    o["apiVersion"] = Value::from(api_version);
                    o["kind"] = Value::from(kind);
                    o
                })
                .collect()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
            Err(e) => Err(self.err(what(), e)),
        }
    }

    /// `GET` through the API server's pod proxy
    /// (`/api/v1/namespaces/NS/pods/POD:PORT/proxy/PATH`): what the pod answers on that port.
    pub async fn pod_proxy_get(
        &self,
        ns: &str,
        pod: &str,
        port: u16,
        path: &str,
    ) -> Result<String, ClusterError> {
        let what = format!("reading /{path} of pod {ns}/{pod} on port {port}");
        let uri = format!("/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy/{path}");
        let request =
            http::Request::get(uri)
                .body(Vec::new())
                .map_err(|source| ClusterError::Request {
                    what: what.clone(),
                    source,
                })?;
        self.probe
            .request_text(request)
            .await
            .map_err(|e| self.err(what, e))
    }

    /// Deletes one object; a missing one counts as deleted. With `dry_run`, the API server's
    /// dry run (authorized and admitted, nothing deleted).
    pub async fn delete(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<(), ClusterError> {
        // Without them the request goes to a path that answers 404, which would pass for
        // "already deleted" (a list item without its kind once did exactly that).
        if api_version.is_empty() || kind.is_empty() {
            let obj = serde_json::json!({ "metadata": { "namespace": ns, "name": name } });
            return Err(ClusterError::BadObject(obj.to_string()));
        }
        match self
            .dynamic(api_version, kind, ns)
            .delete(
                name,
                &DeleteParams {
                    dry_run,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(self.err(format!("deleting {kind} {ns}/{name}"), e)),
        }
    }

    /// Deployments matching a label selector (`a=b,c=d`).
    pub async fn deployments(
        &self,
        ns: &str,
        selector: &str,
    ) -> Result<Vec<Deployment>, ClusterError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        api.list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .map_err(|e| self.err(format!("listing Deployments in {ns}"), e))
    }

    /// Deployments in every namespace matching a label selector.
    pub async fn deployments_everywhere(
        &self,
        selector: &str,
    ) -> Result<Vec<Deployment>, ClusterError> {
        let api: Api<Deployment> = Api::all(self.client.clone());
        api.list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .map_err(|e| self.err(format!("listing Deployments labelled {selector}"), e))
    }

    /// One Deployment, or `None`.
    pub async fn deployment(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<Deployment>, ClusterError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        api.get_opt(name)
            .await
            .map_err(|e| self.err(format!("reading Deployment {ns}/{name}"), e))
    }

    /// Strategic merge patch of a Deployment; the Deployment as the server answered (with
    /// `dry_run`, as it would be).
    pub async fn patch_deployment(
        &self,
        ns: &str,
        name: &str,
        patch: &Value,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        api.patch(
            name,
            &params(PatchParams::default(), dry_run),
            &Patch::Strategic(patch),
        )
        .await
        .map_err(|e| self.err(format!("patching Deployment {ns}/{name}"), e))
        .and_then(|o| answer(&o, "apps/v1", "Deployment"))
    }

    /// Pods matching a label selector.
    pub async fn pods(&self, ns: &str, selector: &str) -> Result<Vec<Pod>, ClusterError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        api.list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .map_err(|e| self.err(format!("listing pods in {ns}"), e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// A delete without apiVersion or kind is an error before any request (the server is
    /// unreachable here), never a 404 taken for "already deleted".
    #[tokio::test]
    async fn delete_without_a_kind_is_refused_before_any_request() {
        let dir = std::env::temp_dir().join(format!("kubectl-mesh-delete-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:1'}\nusers:\n- name: u\n  user: {}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n",
        )
        .unwrap();
        let cluster = connect(Some(&kubeconfig), None).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        for (api_version, kind) in [("", "ConfigMap"), ("v1", "")] {
            match cluster
                .delete(api_version, kind, "ns", "kubectl-mesh-filter", false)
                .await
            {
                Err(ClusterError::BadObject(o)) => {
                    assert!(o.contains("kubectl-mesh-filter"), "{o}")
                }
                other => panic!("{api_version}/{kind}: {other:?}"),
            }
        }
        // With both, the request is made (and fails: nothing listens).
        assert!(matches!(
            cluster.delete("v1", "ConfigMap", "ns", "x", false).await,
            Err(ClusterError::Unreachable { .. })
        ));
    }
}
