//! A real Envoy running the embedded filter the way an Istio proxy does, with Istio's stats
//! setup copied from a real gateway bootstrap (../shared/fixtures/istio): its `stats_config`
//! (the stats inclusion list) and its Prometheus listener (`:15090 /stats/prometheus` routed
//! to the admin interface). The API emulator's pod proxy forwards to that listener.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use kubectl_mesh::envoy::{self, LocalEnvoy, StaticCluster};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The Envoy binary: `$MESH_ENVOY`, else the Makefile's pinned one.
pub fn binary() -> PathBuf {
    envoy_process::require_binary()
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real Istio 1.20 gateway's bootstrap (from its config dump).
pub fn istio_gateway_bootstrap() -> Value {
    let path = manifest().join("../../shared/fixtures/istio/gateway-1.20-ossm2.6-config_dump.json");
    let dump: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["@type"]
                .as_str()
                .unwrap_or_default()
                .ends_with("BootstrapConfigDump")
        })
        .unwrap()["bootstrap"]
        .clone()
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], envoy_process::free_port()))
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A directory for one Envoy, holding the embedded module (what `enable` ships).
pub fn workdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kubectl-mesh-stats-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(
        !kubectl_mesh::module::EMBEDDED.is_empty(),
        "this build has no embedded filter module: run `make wasm` first"
    );
    std::fs::write(dir.join("mesh_filter.wasm"), kubectl_mesh::module::EMBEDDED).unwrap();
    dir
}

/// Addresses of one proxy.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The HTTP listener carrying the filter.
    pub listen: SocketAddr,
    /// Istio's Prometheus listener (15090 in a pod).
    pub prometheus: SocketAddr,
    /// The admin interface (localhost-only in a pod).
    pub admin: SocketAddr,
}

impl Ports {
    /// Fresh loopback ports.
    pub fn new() -> Self {
        Ports {
            listen: free_addr(),
            prometheus: free_addr(),
            admin: free_addr(),
        }
    }
}

/// The local Envoy with the mesh filter for `cfg`, as the gateway runs it.
pub fn mesh(
    cfg: &mesh_core::MeshConfig,
    dir: &Path,
    ports: Ports,
    upstream: SocketAddr,
) -> LocalEnvoy {
    let clusters = ["web:8060", "server:6000"]
        .iter()
        .map(|s| {
            let (service, port) = s.split_once(':').unwrap();
            StaticCluster {
                name: format!("outbound|{port}||{service}.digimon.svc.cluster.local"),
                address: upstream,
                http2: false,
            }
        })
        .collect();
    let code = envoy::local_code(&dir.join("mesh_filter.wasm").display().to_string());
    let mut local = LocalEnvoy::mesh(cfg, code, ports.listen, clusters);
    local.admin = Some(ports.admin);
    local
}

/// `local`'s bootstrap with Istio's stats setup: the gateway's `stats_config` as is (minus the
/// inclusion patterns `drop` names, for negative controls), and its Prometheus listener and
/// `prometheus_stats` cluster pointed at our ports.
pub fn with_istio_stats(local: &LocalEnvoy, ports: Ports, drop: &[&str]) -> Value {
    let istio = istio_gateway_bootstrap();
    let mut b = local.bootstrap();
    let mut stats_config = istio["stats_config"].clone();
    if let Some(patterns) =
        stats_config["stats_matcher"]["inclusion_list"]["patterns"].as_array_mut()
    {
        patterns.retain(|p| !drop.iter().any(|d| p["prefix"] == json!(d)));
    }
    b["stats_config"] = stats_config;
    let statics = &istio["static_resources"];
    let mut listener = statics["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["address"]["socket_address"]["port_value"] == 15090)
        .unwrap()
        .clone();
    listener["name"] = json!("istio-prometheus");
    listener["address"] = socket_address(ports.prometheus);
    let mut cluster = statics["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "prometheus_stats")
        .unwrap()
        .clone();
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] =
        socket_address(ports.admin);
    b["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(listener);
    b["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(cluster);
    b
}

fn socket_address(a: SocketAddr) -> Value {
    json!({ "socket_address": { "address": a.ip().to_string(), "port_value": a.port() } })
}

/// Moves the filter's listener of `bootstrap` into a file-based LDS source in `dir`, so a
/// test can hand Envoy a new version of it (as istiod does) with [`write_lds`].
pub fn with_file_lds(mut bootstrap: Value, dir: &Path) -> (Value, Value) {
    let listeners = bootstrap["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap();
    let i = listeners
        .iter()
        .position(|l| l["name"] == envoy::FILTER_NAME)
        .unwrap();
    let listener = listeners.remove(i);
    let lds = dir.join("lds");
    std::fs::create_dir_all(&lds).unwrap();
    bootstrap["node"] = json!({ "id": "gateway", "cluster": "gateway" });
    bootstrap["dynamic_resources"] = json!({ "lds_config": {
        "path_config_source": {
            "path": lds.join("lds.json"),
            "watched_directory": { "path": lds },
        },
        "resource_api_version": "V3",
    }});
    (bootstrap, listener)
}

/// Writes version `version` of the LDS file with `listener`, atomically (write, then rename).
pub fn write_lds(dir: &Path, version: u32, listener: &Value) {
    let mut l = listener.clone();
    l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    let doc = json!({ "version_info": version.to_string(), "resources": [l] });
    let tmp = dir.join("lds").join("next.json");
    std::fs::write(&tmp, doc.to_string()).unwrap();
    std::fs::rename(&tmp, dir.join("lds").join("lds.json")).unwrap();
}

/// A running Envoy, killed on drop; its log is printed when the test fails.
pub struct Envoy {
    process: envoy_process::Envoy,
    /// Its ports.
    pub ports: Ports,
}

impl Envoy {
    /// Starts Envoy with `bootstrap` and waits until its Prometheus listener answers.
    pub async fn start(bootstrap: &Value, dir: &Path, ports: Ports) -> Envoy {
        binary();
        let mut envoy = Envoy {
            process: envoy_process::Envoy::spawn(bootstrap, dir, &[]).unwrap(),
            ports,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = envoy.process.exited() {
                panic!("Envoy exited with {status}:\n{}", envoy.log());
            }
            if let Ok((200, _)) = get(ports.prometheus, "gateway", "/stats/prometheus", &[]).await {
                return envoy;
            }
            assert!(
                Instant::now() < deadline,
                "Envoy not ready:\n{}",
                envoy.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One metric from its Prometheus listener.
    pub async fn metric(&self, name: &str) -> Option<u64> {
        let (_, body) = get(self.ports.prometheus, "gateway", "/stats/prometheus", &[])
            .await
            .ok()?;
        body.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = rest.strip_prefix("{}").unwrap_or(rest);
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
    }

    /// Waits until `name` has `value` (Envoy applies an LDS update asynchronously).
    pub async fn wait_metric(&self, name: &str, value: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.metric(name).await != Some(value) {
            assert!(
                Instant::now() < deadline,
                "{name} never became {value}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// One HTTP/1.1 request: status and body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = sender
        .send_request(req.body(Full::new(Bytes::new()))?)
        .await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `GET` shorthand for [`request`].
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), Box<dyn std::error::Error + Send + Sync>> {
    request(addr, "GET", host, path, headers).await
}

/// An upstream answering every request `200 upstream`; runs until the test ends.
pub async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"upstream"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
