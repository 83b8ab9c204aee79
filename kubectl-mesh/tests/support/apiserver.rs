//! The real Kubernetes API server (`make kube-apiserver`: etcd and kube-apiserver with Istio's
//! and the Gateway API's CRDs) for the tests that run the binary against a cluster.
//!
//! One server is shared by every test process; each test gets namespaces of its own
//! (`digimon-PID-N`), deleted when it ends. Tests of the gateway context read Istio Gateways
//! and VirtualServices across all namespaces, as the plugin does, so they take a lock shared
//! by every process ([`Cluster::gateway`]) and use Istio's real `istio-system`, reset first.
//! With no kubelet, controllers or sidecar injector, [`Cluster::advance_rollouts`] plays their
//! part through the API (as the emulator's did): Pods built from each Deployment's template,
//! with `istio-proxy` where the namespace asks for injection, marked Running.

#![allow(dead_code)]

use super::TempDir;
use http::Request;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The admin kubeconfig `make kube-apiserver` wrote (user `admin`, group system:masters).
pub fn admin_kubeconfig() -> PathBuf {
    kubeconfig_file("MESH_KUBECONFIG", "kubeconfig")
}

/// The kubeconfig of user `limited`, who has no rights but discovery.
pub fn limited_kubeconfig() -> PathBuf {
    kubeconfig_file("MESH_KUBECONFIG_LIMITED", "kubeconfig-limited")
}

/// A missing kubeconfig fails the test, loudly: never a silent pass without a server.
fn kubeconfig_file(var: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/kube")
            .join(name)
    });
    assert!(
        path.is_file(),
        "no Kubernetes API server: {} is missing.\n  fix: run `make kube-apiserver` first \
         (make test-plugin and make test-kube-apiserver do)",
        path.display()
    );
    path
}

/// A client for a kubeconfig file.
pub async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The URL path of an object's collection (`/apis/apps/v1/namespaces/NS/deployments`).
pub fn collection_path(api_version: &str, plural: &str, ns: &str) -> String {
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    if ns.is_empty() {
        format!("{prefix}/{plural}")
    } else {
        format!("{prefix}/namespaces/{ns}/{plural}")
    }
}

/// Why a request failed: the API server's status code and message.
#[derive(Debug)]
pub struct ApiError {
    pub code: u16,
    pub message: String,
}

/// One request as admin; 2xx answers come back as JSON.
pub async fn request(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    match client.request::<Value>(req).await {
        Ok(v) => Ok(v),
        Err(kube::Error::Api(s)) => Err(ApiError {
            code: s.code,
            message: s.message.clone(),
        }),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// A test's view of the real server: an admin client, a kubeconfig whose context namespace is
/// the test's digimon namespace, and the namespaces it made (deleted when it ends).
pub struct Cluster {
    pub client: kube::Client,
    /// The digimon namespace: `digimon-PID-N`, or `digimon` for gateway tests.
    pub ns: String,
    /// Admin, context namespace [`Cluster::ns`]; a file of this test's own.
    pub kubeconfig: PathBuf,
    pub dir: TempDir,
    /// Namespaces this test created and deletes at the end.
    owned: Vec<String>,
    /// Every namespace whose Deployments [`Cluster::advance_rollouts`] rolls out.
    pub(super) namespaces: Vec<String>,
    /// Held by gateway tests (see the module doc).
    _lock: Option<std::fs::File>,
    /// The cluster lock ([`cluster_lock`]): shared by every test, exclusive for one that
    /// changes what the whole cluster looks like (an OpenShift Service Mesh control plane).
    _cluster: Option<std::fs::File>,
    /// Inject `istio-proxy` as a native sidecar (an init container with `restartPolicy:
    /// Always`), as Istio 1.27+ does on Kubernetes 1.33+.
    pub native_sidecars: bool,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// `target/kube/cluster.lock`, shared (every test) or exclusive (a test no other may see).
async fn cluster_lock(exclusive: bool) -> std::fs::File {
    let path = admin_kubeconfig().with_file_name("cluster.lock");
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&path).unwrap();
        let op = match exclusive {
            true => rustix::fs::FlockOperation::LockExclusive,
            false => rustix::fs::FlockOperation::LockShared,
        };
        rustix::fs::flock(&file, op).unwrap();
        file
    })
    .await
    .unwrap()
}

impl Cluster {
    /// A fresh namespace `digimon-PID-N` labelled `ns_labels`, with the digimon server and web
    /// Deployments, rolled out (pods running, no sidecars yet).
    pub async fn digimon(ns_labels: Value) -> Cluster {
        let lock = cluster_lock(false).await;
        let mut c = Cluster::digimon_unlocked(ns_labels).await;
        c._cluster = Some(lock);
        c
    }

    /// [`Cluster::digimon`] holding the cluster lock alone: no other test runs meanwhile, in any
    /// process (for what every `enable` would see: an OpenShift Service Mesh control plane).
    pub async fn digimon_alone(ns_labels: Value) -> Cluster {
        let lock = cluster_lock(true).await;
        let mut c = Cluster::digimon_unlocked(ns_labels).await;
        c._cluster = Some(lock);
        c
    }

    async fn digimon_unlocked(ns_labels: Value) -> Cluster {
        let admin = admin_kubeconfig();
        let client = client(&admin).await;
        let ns = loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("digimon-{}-{n}", std::process::id());
            let created = request(
                &client,
                "POST",
                "/api/v1/namespaces",
                "application/json",
                &super::namespace(&name, ns_labels.clone()),
            )
            .await;
            match created {
                Ok(_) => break name,
                // Left by an earlier process with the same id: take the next name.
                Err(e) if e.code == 409 => continue,
                Err(e) => panic!("creating namespace {name}: {e:?}"),
            }
        };
        default_service_account(&client, &ns).await;
        let c = Cluster::new(client, &admin, ns.clone(), vec![ns.clone()], None);
        c.seed_digimon().await;
        c.advance_rollouts().await;
        c
    }

    /// For the gateway context: takes the lock every process shares (the plugin lists Istio
    /// Gateways and VirtualServices in all namespaces), then resets [`GATEWAY_NAMESPACES`]
    /// (labels gone, their objects deleted) and seeds the digimon Deployments and
    /// Istio's `istio-ingressgateway` (pods labelled `istio=ingressgateway`, running
    /// `istio-proxy`), rolled out.
    pub async fn gateway() -> Cluster {
        let shared = cluster_lock(false).await;
        let admin = admin_kubeconfig();
        let lock_path = admin.with_file_name("gateway-tests.lock");
        let lock = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::create(&lock_path).unwrap();
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
            file
        })
        .await
        .unwrap();
        let client = client(&admin).await;
        for ns in GATEWAY_NAMESPACES {
            reset_namespace(&client, ns).await;
        }
        let mut c = Cluster::new(client, &admin, "digimon".into(), Vec::new(), Some(lock));
        c._cluster = Some(shared);
        c.seed_digimon().await;
        c.seed(super::deployment(
            "istio-system",
            "istio-ingressgateway",
            json!({ "istio": "ingressgateway", "app": "istio-ingressgateway" }),
            json!([{ "name": "istio-proxy", "image": "istio/proxyv2" }]),
        ))
        .await;
        c.advance_rollouts().await;
        c
    }

    fn new(
        client: kube::Client,
        admin: &Path,
        ns: String,
        owned: Vec<String>,
        lock: Option<std::fs::File>,
    ) -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("kubectl-mesh-kube-{}-{ns}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        let text = std::fs::read_to_string(admin)
            .unwrap()
            .replace("namespace: default", &format!("namespace: {ns}"));
        std::fs::write(&kubeconfig, text).unwrap();
        let namespaces = if lock.is_some() {
            GATEWAY_NAMESPACES.iter().map(|n| n.to_string()).collect()
        } else {
            owned.clone()
        };
        Cluster {
            client,
            ns,
            kubeconfig,
            dir: TempDir(dir),
            owned,
            namespaces,
            _lock: lock,
            _cluster: None,
            native_sidecars: false,
        }
    }

    /// The Helm `gateway` chart's gateway, released as `istio-ingress` in istio-ingress: an
    /// injected Deployment (its `istio-proxy` container is `image: auto`), pods labelled
    /// istio=ingress, app=istio-ingress.
    pub async fn seed_helm_gateway(&self) {
        let mut d = super::deployment(
            "istio-ingress",
            "istio-ingress",
            json!({ "istio": "ingress", "app": "istio-ingress" }),
            json!([{ "name": "istio-proxy", "image": "auto" }]),
        );
        d["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"] = json!("true");
        self.seed(d).await;
    }

    /// A Gateway API gateway: Gateway `public` (class istio) in digimon with one HTTP listener,
    /// and the Deployment istiod makes for it, `public-istio`, pods labelled with its name.
    pub async fn seed_gateway_api(&self, listener: Value) {
        self.seed(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": { "namespace": "digimon", "name": "public" },
            "spec": { "gatewayClassName": "istio", "listeners": [listener] },
        }))
        .await;
        let labels = json!({ "gateway.networking.k8s.io/gateway-name": "public" });
        let mut d = super::deployment(
            "digimon",
            "public-istio",
            labels,
            json!([{ "name": "istio-proxy", "image": "auto" }]),
        );
        d["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"] = json!("true");
        self.seed(d).await;
    }

    async fn seed_digimon(&self) {
        for (name, image) in [
            ("server", "superj80820/digimon-service"),
            ("web", "superj80820/digimon-web"),
        ] {
            self.seed(super::deployment(
                &self.ns,
                name,
                json!({ "io.kompose.service": name }),
                json!([{ "name": name, "image": image }]),
            ))
            .await;
        }
    }

    /// The server's digimon config (tests/fixtures/digimon-server.yaml) for this namespace.
    pub fn mesh_yaml(&self) -> PathBuf {
        self.config_for(&super::mesh_yaml(), "digimon-server.yaml")
    }

    /// The whole digimon example for this namespace.
    pub fn example_yaml(&self) -> PathBuf {
        self.config_for(&super::example_yaml(), "mesh.yaml")
    }

    fn config_for(&self, file: &Path, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(file).unwrap().replace(
            "\nnamespace: digimon\n",
            &format!("\nnamespace: {}\n", self.ns),
        );
        let path = self.dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `enable` of this namespace's digimon server config, sidecar-inbound, plus `extra`.
    pub fn enable_args<'a>(&self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = super::enable_file_args(&self.mesh_yaml(), super::SERVER, "sidecar-inbound");
        args.extend_from_slice(extra);
        args
    }

    /// Creates an object as admin.
    pub async fn seed(&self, obj: Value) {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
        let path = collection_path(
            obj["apiVersion"].as_str().unwrap(),
            &kubectl_mesh::cluster::plural(obj["kind"].as_str().unwrap()),
            ns,
        );
        request(&self.client, "POST", &path, "application/json", &obj)
            .await
            .unwrap_or_else(|e| panic!("creating {obj}: {e:?}"));
    }

    /// The live object, or `None` (`api_version` as in objects: `v1`, `apps/v1`).
    pub async fn live(
        &self,
        api_version: &str,
        plural: &str,
        ns: &str,
        name: &str,
    ) -> Option<Value> {
        let path = format!("{}/{name}", collection_path(api_version, plural, ns));
        match request(&self.client, "GET", &path, "application/json", &Value::Null).await {
            Ok(v) => Some(v),
            Err(e) if e.code == 404 => None,
            Err(e) => panic!("GET {path}: {e:?}"),
        }
    }

    /// Deletes an object, as a `kubectl delete` by someone else would.
    pub async fn remove(&self, api_version: &str, plural: &str, ns: &str, name: &str) {
        let path = format!("{}/{name}", collection_path(api_version, plural, ns));
        request(
            &self.client,
            "DELETE",
            &path,
            "application/json",
            &Value::Null,
        )
        .await
        .unwrap_or_else(|e| panic!("DELETE {path}: {e:?}"));
    }

    /// Items of a collection.
    pub async fn list(&self, api_version: &str, plural: &str, ns: &str) -> Vec<Value> {
        let path = collection_path(api_version, plural, ns);
        request(&self.client, "GET", &path, "application/json", &Value::Null)
            .await
            .map(|l| l["items"].as_array().cloned().unwrap_or_default())
            .unwrap_or_else(|e| panic!("GET {path}: {e:?}"))
    }

    /// Every object of the kinds kubectl-mesh reads or writes in this test's namespaces, and
    /// the namespaces, by resourceVersion: equal before and after means nothing was written.
    pub async fn fingerprint(&self) -> BTreeMap<String, String> {
        let mut all = BTreeMap::new();
        for ns in &self.namespaces {
            if let Some(n) = self.live("v1", "namespaces", "", ns).await {
                all.insert(format!("namespace/{ns}"), rv(&n));
            }
            for (api_version, plural) in KINDS {
                for o in self.list(api_version, plural, ns).await {
                    let name = o["metadata"]["name"].as_str().unwrap_or_default();
                    all.insert(format!("{plural}/{ns}/{name}"), rv(&o));
                }
            }
        }
        all
    }

    /// A Deployment's pod template annotations, live.
    pub async fn annotations(&self, ns: &str, deployment: &str) -> Value {
        self.live("apps/v1", "deployments", ns, deployment)
            .await
            .unwrap()["spec"]["template"]["metadata"]["annotations"]
            .clone()
    }

    /// The server Deployment's pod template annotations, live.
    pub async fn server_annotations(&self) -> Value {
        self.annotations(&self.ns, "server").await
    }

    /// Names of the pods in `ns`.
    pub async fn pod_names(&self, ns: &str) -> Vec<String> {
        self.list("v1", "pods", ns)
            .await
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The namespaces gateway tests use (reset first): the app's, istioctl's, the Helm chart's,
/// another team's.
pub const GATEWAY_NAMESPACES: [&str; 4] = ["digimon", "istio-system", "istio-ingress", "apps"];

/// The kinds a test's namespaces hold: what kubectl-mesh writes and what tests seed.
const KINDS: &[(&str, &str)] = &[
    ("v1", "configmaps"),
    ("v1", "pods"),
    ("apps/v1", "deployments"),
    ("networking.istio.io/v1alpha3", "envoyfilters"),
    ("networking.istio.io/v1", "gateways"),
    ("networking.istio.io/v1", "virtualservices"),
    ("extensions.istio.io/v1alpha1", "wasmplugins"),
    ("extensions.istio.io/v1alpha1", "trafficextensions"),
    ("gateway.networking.k8s.io/v1", "gateways"),
    ("gateway.networking.k8s.io/v1", "httproutes"),
];

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Makes `ns` exist with no labels or annotations and none of [`KINDS`] in it.
async fn reset_namespace(client: &kube::Client, ns: &str) {
    let path = format!("/api/v1/namespaces/{ns}");
    match request(client, "GET", &path, "application/json", &Value::Null).await {
        Ok(live) => {
            let mut patch = json!({ "metadata": { "labels": {}, "annotations": {} } });
            for field in ["labels", "annotations"] {
                for key in live["metadata"][field]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    if key != "kubernetes.io/metadata.name" {
                        patch["metadata"][field][key] = Value::Null;
                    }
                }
            }
            request(
                client,
                "PATCH",
                &path,
                "application/merge-patch+json",
                &patch,
            )
            .await
            .unwrap_or_else(|e| panic!("resetting namespace {ns}: {e:?}"));
        }
        Err(e) if e.code == 404 => {
            request(
                client,
                "POST",
                "/api/v1/namespaces",
                "application/json",
                &super::namespace(ns, json!({})),
            )
            .await
            .unwrap_or_else(|e| panic!("creating namespace {ns}: {e:?}"));
        }
        Err(e) => panic!("reading namespace {ns}: {e:?}"),
    }
    for (api_version, plural) in KINDS {
        let path = collection_path(api_version, plural, ns);
        request(client, "DELETE", &path, "application/json", &Value::Null)
            .await
            .unwrap_or_else(|e| panic!("emptying {path}: {e:?}"));
    }
    default_service_account(client, ns).await;
}

/// A Pod needs its namespace's `default` ServiceAccount (admission refuses it otherwise). The
/// server's serviceaccount controller makes it soon after the namespace; this makes it now.
async fn default_service_account(client: &kube::Client, ns: &str) {
    let sa =
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "default" } });
    let path = collection_path("v1", "serviceaccounts", ns);
    match request(client, "POST", &path, "application/json", &sa).await {
        Ok(_) => {}
        Err(e) if e.code == 409 => {}
        Err(e) => panic!("creating {ns}/default ServiceAccount: {e:?}"),
    }
}

impl Drop for Cluster {
    /// Deletes the namespaces this test made (the server's namespace controller deletes what
    /// they hold). Drop cannot await, so a thread with a runtime of its own does it.
    fn drop(&mut self) {
        if self.owned.is_empty() {
            return;
        }
        let owned = std::mem::take(&mut self.owned);
        let admin = admin_kubeconfig();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = client(&admin).await;
                for ns in owned {
                    let path = format!("/api/v1/namespaces/{ns}");
                    let _ =
                        request(&client, "DELETE", &path, "application/json", &Value::Null).await;
                }
            });
        })
        .join();
    }
}
