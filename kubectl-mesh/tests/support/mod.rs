//! Shared by the tests that run the real binary against the API emulator: the emulator set
//! up with the digimon namespace, running the binary, reading live objects.

#![allow(dead_code)]

pub mod apiserver;
pub mod envoy;
pub mod policy;
pub mod rollout;

use crate::emulator::Emulator;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_kubectl-mesh");
pub const SERVER: &str = "io.kompose.service=server";

/// The server's own part of the digimon config: these tests drive the sidecar-inbound
/// context, where the namespace label, pod annotations and rollouts come into play.
pub fn mesh_yaml() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/digimon-server.yaml")
}

/// The whole digimon example, for the gateway.
pub fn example_yaml() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/digimon/mesh.yaml")
}

pub struct Setup {
    pub emu: Emulator,
    pub kubeconfig: PathBuf,
    pub _dir: TempDir,
}

/// A directory removed when the test ends.
pub struct TempDir(pub PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn namespace(name: &str, labels: Value) -> Value {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": labels } })
}

pub fn deployment(ns: &str, name: &str, labels: Value, containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "namespace": ns, "labels": labels },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels, "annotations": { "user/own": "keep" } },
                "spec": { "containers": containers },
            },
        },
    })
}

/// The digimon namespace with its server and web Deployments (pods running, no sidecars yet).
pub async fn digimon(ns_labels: Value) -> Setup {
    let emu = Emulator::start().await;
    {
        let mut st = emu.state();
        st.seed(namespace("digimon", ns_labels));
        st.seed(deployment(
            "digimon",
            "server",
            json!({ "io.kompose.service": "server" }),
            json!([{ "name": "server", "image": "superj80820/digimon-service" }]),
        ));
        st.seed(deployment(
            "digimon",
            "web",
            json!({ "io.kompose.service": "web" }),
            json!([{ "name": "web", "image": "superj80820/digimon-web" }]),
        ));
        st.advance_rollouts();
    }
    let dir = std::env::temp_dir().join(format!(
        "kubectl-mesh-emu-{}-{}",
        std::process::id(),
        emu.url.rsplit(':').next().unwrap()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = emu.kubeconfig(&dir, "digimon");
    Setup {
        emu,
        kubeconfig,
        _dir: TempDir(dir),
    }
}

pub fn command(kubeconfig: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG");
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// What the binary is pointed at: the emulator ([`Setup`]) or the real API server
/// ([`apiserver::Cluster`]).
pub trait Target {
    /// The kubeconfig `--kubeconfig` names.
    fn kubeconfig(&self) -> &Path;
}

impl Target for Setup {
    fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
}

impl Target for apiserver::Cluster {
    fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
}

pub async fn run(s: &impl Target, args: &[&str]) -> Run {
    run_with(s.kubeconfig(), args).await
}

/// The binary with `--kubeconfig kubeconfig` and `args`, its output collected.
pub async fn run_with(kubeconfig: &Path, args: &[&str]) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(60), command(kubeconfig, args).output())
        .await
        .expect("kubectl-mesh hung")
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

pub fn live(s: &Setup, prefix: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
    s.emu.state().get(prefix, plural, ns, name)
}

/// [`digimon`] plus Istio's ingress gateway: namespace istio-system with the
/// `istio-ingressgateway` Deployment (pods labelled `istio=ingressgateway`, running
/// `istio-proxy`).
pub async fn with_gateway() -> Setup {
    let s = digimon(json!({})).await;
    {
        let mut st = s.emu.state();
        st.seed(namespace("istio-system", json!({})));
        st.seed(deployment(
            "istio-system",
            "istio-ingressgateway",
            json!({ "istio": "ingressgateway", "app": "istio-ingressgateway" }),
            json!([{ "name": "istio-proxy", "image": "istio/proxyv2" }]),
        ));
        st.advance_rollouts();
    }
    s
}

/// `kubectl mesh enable` of the digimon example at the gateway (the default context).
pub fn gateway_enable_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let file = Box::leak(
        example_yaml()
            .to_string_lossy()
            .into_owned()
            .into_boxed_str(),
    );
    let mut args = vec!["enable", "-f", file, "-n", "istio-system"];
    args.extend_from_slice(extra);
    args
}

/// Names of the pods in `ns`.
pub fn pod_names(s: &Setup, ns: &str) -> Vec<String> {
    s.emu
        .state()
        .all("api/v1", "pods")
        .iter()
        .filter(|p| p["metadata"]["namespace"] == ns)
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `enable -f FILE -l SELECTOR --envoy-context CONTEXT`.
pub fn enable_file_args(
    file: &Path,
    selector: &'static str,
    context: &'static str,
) -> Vec<&'static str> {
    let file = Box::leak(file.to_string_lossy().into_owned().into_boxed_str());
    vec![
        "enable",
        "-f",
        file,
        "-l",
        selector,
        "--envoy-context",
        context,
    ]
}

/// `enable` of the digimon example for the server, sidecar-inbound, plus `extra`.
pub fn enable_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = enable_file_args(&mesh_yaml(), SERVER, "sidecar-inbound");
    args.extend_from_slice(extra);
    args
}

/// The server Deployment's pod template annotations, live.
pub fn server_annotations(s: &Setup) -> Value {
    live(s, "apis/apps/v1", "deployments", "digimon", "server").unwrap()["spec"]["template"]
        ["metadata"]["annotations"]
        .clone()
}
