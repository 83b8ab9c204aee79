//! One scenario of the Istio suite on istiod's own code: the digimon app's manifests as they
//! are, an ingress gateway as users install it, a gateway or sidecar proxy, what `kubectl mesh
//! render` makes for it and what `enable` does to the pods; istiod's config for that proxy
//! before and after, run in real Envoy in front of the app's real backends.

use super::agent::Pod;
use super::checks::other_app;
use super::generated::{Dump, Runnable, Setting};
use super::istiod::Generate;
use crate::client::{Request, Response};
use crate::envoy::Envoy;
use crate::upstream::EchoUpstream;
use anyhow::Context as _;
use kubectl_mesh::render::{self, Api, Context, Module, RenderOptions, Rendered};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The digimon app's Kubernetes manifests (../shared), as the app's authors wrote them.
pub fn digimon_manifests() -> PathBuf {
    crate::workspace_root().join("../shared/fixtures/digimon/k8s-1.15")
}

fn fixture(name: &str) -> PathBuf {
    crate::workspace_root()
        .join("tests/istio/fixtures")
        .join(name)
}

/// Every YAML document in `path` (a file or a directory of them).
pub fn read_documents(path: &Path) -> anyhow::Result<Vec<Value>> {
    let mut files = Vec::new();
    if path.is_dir() {
        for e in std::fs::read_dir(path)? {
            files.push(e?.path());
        }
        files.sort();
    } else {
        files.push(path.to_owned());
    }
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc)
                .with_context(|| format!("parsing {}", f.display()))?;
            if !v.is_null() {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// A gateway installation (Service and Namespace) from `tests/istio/fixtures`.
#[derive(Debug, Clone)]
pub struct GatewayInstall {
    /// The fixture file.
    pub file: &'static str,
    /// Its namespace.
    pub namespace: &'static str,
    /// Its pods' selector label (what kubectl-mesh selects them by).
    pub label: (&'static str, &'static str),
    /// Its pods' `app` label (`""`: none).
    pub app: &'static str,
    /// Its Deployment.
    pub deployment: &'static str,
}

/// `istioctl install`'s gateway.
pub const ISTIOCTL_GATEWAY: GatewayInstall = GatewayInstall {
    file: "istioctl-gateway.yaml",
    namespace: "istio-system",
    label: ("istio", "ingressgateway"),
    app: "istio-ingressgateway",
    deployment: "istio-ingressgateway",
};

/// The Helm `gateway` chart's, released as `istio-ingress` in `istio-ingress`.
pub const HELM_GATEWAY: GatewayInstall = GatewayInstall {
    file: "helm-gateway.yaml",
    namespace: "istio-ingress",
    label: ("istio", "ingress"),
    app: "istio-ingress",
    deployment: "istio-ingress",
};

/// A Kubernetes Gateway API gateway: Gateway `public` (class istio) in digimon, its pods
/// labelled by istiod with the Gateway's name, its Service `public-istio` (istiod-gen's).
pub const GATEWAY_API: GatewayInstall = GatewayInstall {
    file: "gateway-api.yaml",
    namespace: "digimon",
    label: ("gateway.networking.k8s.io/gateway-name", "public"),
    app: "",
    deployment: "public-istio",
};

/// One proxy, one setup.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Where the filter runs.
    pub context: Context,
    /// The Istio API carrying it.
    pub api: Api,
    /// The mesh config.
    pub config: PathBuf,
    /// The gateway installation (also what sidecars see of it).
    pub gateway: GatewayInstall,
    /// Sidecars: the labels of the workload whose sidecar runs the filter.
    pub workload: (&'static str, &'static str),
    /// The proxy's `ISTIO_VERSION` (default: istiod's own).
    pub proxy_version: Option<String>,
    /// istiod's environment.
    pub env: Vec<(String, String)>,
    /// More objects in the cluster (before and after): the variants.
    pub extra: Vec<Value>,
    /// How the module reaches the proxy.
    pub module: Module,
    /// Whether the proxy's pod went through `enable`'s rollout (its label and mount).
    pub rolled: bool,
    /// The module file the pod's mount holds.
    pub mounted_module: PathBuf,
    /// istio-agent cannot download a remote module (the registry is unreachable).
    pub download_fails: bool,
}

impl Scenario {
    /// The gateway running the whole digimon example, shared with another team's app.
    pub fn gateway(api: Api) -> Scenario {
        let mut s = Scenario::new(Context::Gateway, api, "examples/digimon/mesh.yaml");
        s.extra = other_app("forecast.example", "weather", 6100);
        s
    }

    /// The web app's sidecar routing its calls to the config's hosts.
    pub fn sidecar_outbound(api: Api) -> Scenario {
        let mut s = Scenario::new(Context::SidecarOutbound, api, "examples/digimon/mesh.yaml");
        s.workload = ("io.kompose.service", "web");
        s
    }

    /// The server's own sidecar, with the server's part of the config.
    pub fn sidecar_inbound(api: Api) -> Scenario {
        let mut s = Scenario::new(
            Context::SidecarInbound,
            api,
            "kubectl-mesh/tests/fixtures/digimon-server.yaml",
        );
        s.workload = ("io.kompose.service", "server");
        s
    }

    fn new(context: Context, api: Api, config: &str) -> Scenario {
        Scenario {
            context,
            api,
            config: crate::workspace_root().join(config),
            gateway: ISTIOCTL_GATEWAY,
            workload: ("", ""),
            proxy_version: None,
            env: Vec::new(),
            extra: Vec::new(),
            module: Module::ConfigMap(module_bytes()),
            rolled: true,
            mounted_module: crate::envoy::wasm_module(),
            download_fails: false,
        }
    }

    /// The render options `kubectl mesh render` would use for this scenario.
    pub fn options(&self) -> RenderOptions {
        let (namespace, selector) = match self.context {
            Context::Gateway => (self.gateway.namespace, self.gateway.label),
            _ => ("digimon", self.workload),
        };
        RenderOptions {
            name: "kubectl-mesh".into(),
            namespace: namespace.into(),
            selector: BTreeMap::from([(selector.0.to_owned(), selector.1.to_owned())]),
            context: self.context,
            api: self.api,
            module: self.module.clone(),
            gateway_deployment: self.gateway.deployment.into(),
            gateway: Default::default(),
            source: self.config.display().to_string(),
            istio_version: render::NEWEST_ISTIO,
        }
    }

    /// What `render` makes.
    pub fn render(&self) -> anyhow::Result<Rendered> {
        let cfg = render::load_config(&self.config)?;
        Ok(render::render(&cfg, &self.options())?)
    }

    /// The proxy's pod labels: the workload's, plus `enable`'s label once rolled.
    fn proxy_labels(&self, rendered: Option<&Rendered>) -> BTreeMap<String, String> {
        let (k, v) = match self.context {
            Context::Gateway => self.gateway.label,
            _ => self.workload,
        };
        let mut labels = BTreeMap::from([(k.to_owned(), v.to_owned())]);
        if self.context == Context::Gateway && !self.gateway.app.is_empty() {
            labels.insert("app".into(), self.gateway.app.into());
        }
        if let (true, Some(r)) = (self.rolled, rendered) {
            labels.extend(r.pod_labels.clone());
        }
        labels
    }

    /// istiod's config for the proxy, with `rendered` applied (and the pods rolled, if the
    /// scenario says so) or without kubectl-mesh.
    pub fn generate(&self, rendered: Option<&Rendered>, dir: &Path) -> anyhow::Result<Dump> {
        Dump::parse(&self.config_dump(rendered, dir)?)
    }

    /// [`Scenario::generate`]'s `/config_dump` JSON as istiod-gen prints it.
    pub fn config_dump(&self, rendered: Option<&Rendered>, dir: &Path) -> anyhow::Result<Value> {
        let labels = self.proxy_labels(rendered);
        let (namespace, proxy_type) = match self.context {
            Context::Gateway => (self.gateway.namespace, super::istiod::ProxyType::Router),
            _ => ("digimon", super::istiod::ProxyType::Sidecar),
        };
        let mut g = match proxy_type {
            super::istiod::ProxyType::Router => Generate::router(namespace, &[]),
            super::istiod::ProxyType::Sidecar => Generate::sidecar(namespace, &[]),
        };
        g.labels = labels.clone();
        g.default_namespace = "digimon".into();
        g.istio_version.clone_from(&self.proxy_version);
        g.env.clone_from(&self.env);
        g.files.push(fixture(self.gateway.file));
        // The app's Deployments, with what enable's template patch adds on the rolled ones.
        for mut doc in read_documents(&digimon_manifests())? {
            let template_labels = &doc["spec"]["template"]["metadata"]["labels"];
            let selected = doc["kind"] == "Deployment"
                && self.context != Context::Gateway
                && self.rolled
                && template_labels[self.workload.0] == self.workload.1;
            if let (true, Some(r)) = (selected, rendered) {
                let meta = &mut doc["spec"]["template"]["metadata"];
                for (k, v) in &r.pod_labels {
                    meta["labels"][k] = Value::String(v.clone());
                }
                for (k, v) in &r.pod_annotations {
                    meta["annotations"][k] = Value::String(v.clone());
                }
            }
            g.objects.push(doc);
        }
        g.objects.extend(self.extra.iter().cloned());
        if let Some(r) = rendered {
            g.objects.extend(
                r.objects
                    .iter()
                    .filter(|o| o["kind"] != "ConfigMap")
                    .cloned(),
            );
        }
        g.run(dir)
    }

    /// The pod as it is: the module mounted where the ConfigMap puts it once rolled.
    pub fn pod(&self) -> Pod {
        let mounted = self.rolled && matches!(self.module, Module::ConfigMap(_));
        Pod {
            mounts: if mounted {
                vec![(
                    format!("{}/{}", render::MODULE_DIR, render::MODULE_FILE),
                    self.mounted_module.clone(),
                )]
            } else {
                Vec::new()
            },
            download: (!self.download_fails).then(crate::envoy::wasm_module),
        }
    }
}

/// The module `make wasm` built.
pub fn module_bytes() -> Vec<u8> {
    std::fs::read(crate::envoy::wasm_module()).unwrap_or_default()
}

/// Where a cluster's requests go: the app's real server and web service for their clusters
/// (outbound and, for the server's own sidecar, inbound), an echo upstream for every other
/// cluster (so the upstream that answered shows), nothing for istiod's `BlackHoleCluster`.
pub struct Upstreams {
    server: SocketAddr,
    web: SocketAddr,
    echoes: Mutex<BTreeMap<String, EchoUpstream>>,
}

impl Upstreams {
    /// With the app's backends at `server` and `web`.
    pub fn new(server: SocketAddr, web: SocketAddr) -> Upstreams {
        Upstreams {
            server,
            web,
            echoes: Mutex::default(),
        }
    }

    /// The address serving `cluster`.
    pub fn address(&self, cluster: &str) -> Option<SocketAddr> {
        if cluster == "BlackHoleCluster" {
            return None;
        }
        if cluster.ends_with("|6000||server.digimon.svc.cluster.local")
            || cluster == "inbound|6000||"
        {
            return Some(self.server);
        }
        if cluster.ends_with("|8060||web.digimon.svc.cluster.local") {
            return Some(self.web);
        }
        let mut echoes = self.echoes.lock().unwrap_or_else(|p| p.into_inner());
        if !echoes.contains_key(cluster) {
            let echo = EchoUpstream::start(cluster).ok()?;
            echoes.insert(cluster.to_owned(), echo);
        }
        echoes
            .get(cluster)
            .map(|e| SocketAddr::from(([127, 0, 0, 1], e.port)))
    }
}

/// A generated config running in real Envoy.
pub struct Proxy {
    /// The Envoy process.
    pub envoy: Envoy,
    /// What runs.
    pub runnable: Runnable,
    /// Listener ports, in the runnable's order.
    pub ports: Vec<u16>,
}

impl Proxy {
    /// Starts `dump` in Envoy, its clusters sent to `upstreams`, its extension configs as
    /// istio-agent would hand them over in `pod`; files go to `dir`.
    pub fn start(
        dump: &Dump,
        upstreams: &Upstreams,
        pod: &Pod,
        dir: &Path,
    ) -> anyhow::Result<Proxy> {
        let address = |c: &str| upstreams.address(c);
        let runnable = Runnable::new(
            dump,
            &Setting {
                address: &address,
                pod,
                dir,
            },
        )?;
        let ports = RefCell::new(Vec::new());
        let envoy = Envoy::start_with(&|admin| {
            let p: Vec<u16> = runnable
                .listeners
                .iter()
                .map(|_| crate::free_port())
                .collect();
            let b = runnable.bootstrap(&p, admin);
            let first = p.first().copied().unwrap_or(0);
            *ports.borrow_mut() = p;
            (b, first)
        })?;
        Ok(Proxy {
            envoy,
            runnable,
            ports: ports.into_inner(),
        })
    }

    /// Sends `req` to the listener whose label contains `listener`.
    pub fn send(&self, listener: &str, req: &Request) -> anyhow::Result<Response> {
        let i = self.runnable.listener(listener)?;
        req.send(self.ports[i]).with_context(|| {
            format!(
                "{} {}{} to {listener}\nEnvoy log:\n{}",
                req.method,
                req.host.as_deref().unwrap_or(""),
                req.path,
                self.envoy.log()
            )
        })
    }
}

/// The app's backends and the upstreams every proxy of a test sends to; files in a temporary
/// directory removed at the end.
pub struct Setup {
    /// The real server and web service.
    pub backends: crate::digimon::Backends,
    /// Where clusters send.
    pub upstreams: Upstreams,
    /// Scratch space (ECDS files, istiod-gen's input).
    pub dir: PathBuf,
    group: crate::app::ProcessGroup,
}

impl Setup {
    /// Starts the server and the web service (`make test-istio` builds them).
    pub fn start() -> anyhow::Result<Setup> {
        let root = crate::workspace_root();
        let bins = crate::app::Binaries::in_dir(&root.join("target/debug"))?;
        let group = crate::app::ProcessGroup::default();
        let backends = crate::digimon::Backends::start(
            &bins,
            &root.join("target/digimon-web"),
            20,
            false,
            &group,
        )?;
        let upstreams = Upstreams::new(backends.server_addr.parse()?, backends.web_addr.parse()?);
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mesh-istiod-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Setup {
            backends,
            upstreams,
            dir,
            group,
        })
    }

    /// A fresh subdirectory for one proxy's files.
    pub fn subdir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    /// istiod's config for `s` (with kubectl-mesh's objects when `rendered` is given), running.
    pub fn proxy(
        &self,
        s: &Scenario,
        rendered: Option<&Rendered>,
        name: &str,
    ) -> anyhow::Result<Proxy> {
        let dump = self.generate(s, rendered, name)?;
        self.run(&dump, s, name)
    }

    /// istiod's config for `s`, not started (a test may look at it or change it first).
    pub fn generate(
        &self,
        s: &Scenario,
        rendered: Option<&Rendered>,
        name: &str,
    ) -> anyhow::Result<Dump> {
        s.generate(rendered, &self.subdir(name)?)
    }

    /// Runs `dump` for `s`'s pod.
    pub fn run(&self, dump: &Dump, s: &Scenario, name: &str) -> anyhow::Result<Proxy> {
        Proxy::start(dump, &self.upstreams, &s.pod(), &self.subdir(name)?)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.group.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The crash module (`tests/crash-filter`, built by `make crash-wasm`): `$MESH_CRASH_WASM`,
/// else where cargo puts it.
pub fn crash_module() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("MESH_CRASH_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::workspace_root().join("target/wasm32-wasip1/release/mesh_crash_filter.wasm")
        });
    anyhow::ensure!(
        path.is_file(),
        "{} does not exist: build it with `make crash-wasm` (make test-istio does)",
        path.display()
    );
    Ok(path)
}
