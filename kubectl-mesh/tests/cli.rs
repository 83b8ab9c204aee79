//! The binary as a kubectl plugin: discovery by the real `kubectl`, the krew manifest,
//! kubeconfig and context flags, version and completion offline, config errors, logging.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulator;
mod support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

use support::apiserver::Cluster;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honours_kubeconfig_env_and_context_flag() {
    let s = Cluster::digimon(json!({})).await;
    // Two contexts: the current one points nowhere, `real` at the API server.
    let mut kc: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&s.kubeconfig).unwrap()).unwrap();
    let url = kc["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = kc["users"][0]["name"].as_str().unwrap().to_owned();
    let real = kc["clusters"][0]["name"].as_str().unwrap().to_owned();
    kc["clusters"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "dead", "cluster": { "server": "http://127.0.0.1:1" } }));
    kc["contexts"] = json!([
        { "name": "dead", "context": { "cluster": "dead", "user": user } },
        { "name": "real", "context": { "cluster": real, "user": user, "namespace": s.ns } },
    ]);
    kc["current-context"] = json!("dead");
    let path = s.dir.0.join("two-contexts");
    let text = serde_yaml_ng::to_string(&kc).unwrap();
    std::fs::write(&path, text).unwrap();
    let run_env = |extra: &'static [&'static str]| {
        let path = path.clone();
        async move {
            let out = tokio::process::Command::new(BIN)
                .args(["check", "-l", SERVER])
                .args(extra)
                .env("KUBECONFIG", &path)
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    assert!(run_env(&[])
        .await
        .contains("[FAIL] API reachable at http://127.0.0.1:1/"));
    let out = run_env(&["--context", "real"]).await;
    assert!(
        out.contains(&format!("[ok]   API reachable at {url}/")),
        "{out}"
    );
    assert!(
        out.contains(&format!("namespace {} exists", s.ns)),
        "the context's namespace is the default: {out}"
    );
}

/// The template `make release` fills in (tests/tests/release.rs checks the result with krew).
#[test]
fn krew_manifest_template_matches_the_crate() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/krew/mesh.yaml.in");
    let m: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        m["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(m["kind"], "Plugin");
    assert_eq!(
        m["metadata"]["name"], "mesh",
        "kubectl mesh <=> plugin name mesh"
    );
    assert_eq!(m["spec"]["version"], "@VERSION@");
    let platforms = m["spec"]["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2, "the two targets `make release` builds");
    for p in platforms {
        let arch = p["selector"]["matchLabels"]["arch"].as_str().unwrap();
        assert_eq!(p["selector"]["matchLabels"]["os"], "linux");
        assert_eq!(p["bin"], "kubectl-mesh");
        assert_eq!(p["uri"], format!("@URI_{arch}@"));
        assert_eq!(p["sha256"], format!("@SHA256_{arch}@"));
        let files: Vec<&str> = p["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["from"].as_str().unwrap())
            .collect();
        assert_eq!(files, ["kubectl-mesh", "LICENSE"]);
    }
}

#[test]
fn kubectl_discovers_the_plugin() {
    // kubectl is on the image: without it this test cannot prove anything, so it fails.
    let out = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .expect("kubectl on PATH (the machine's image has it at /usr/bin/kubectl)");
    assert!(out.status.success());
    let dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("kubectl")
        .args(["mesh", "version"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!("kubectl-mesh {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    // kubectl hands every flag to the plugin, even kubectl's own ones before the subcommand.
    let file = mesh_yaml();
    let out = std::process::Command::new("kubectl")
        .args([
            "mesh",
            "-n",
            "istio-system",
            "-o",
            "json",
            "render",
            "-f",
            file.to_str().unwrap(),
            "--envoy-context",
            "gateway",
        ])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"][1]["metadata"]["namespace"], "istio-system");
    let out = std::process::Command::new("kubectl")
        .args(["plugin", "list"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("kubectl-mesh"));
}

#[test]
fn config_errors_name_the_file_the_field_and_the_fix() {
    let dir = std::env::temp_dir().join(format!("kubectl-mesh-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = TempDir(dir.clone());
    let bad = dir.join("mesh.yaml");
    let text = std::fs::read_to_string(mesh_yaml())
        .unwrap()
        .replace("port: 6000", "port: 0");
    std::fs::write(&bad, text).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["render", "-l", "a=b", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "could not run: {stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: invalid field `hosts[0].routes[0].to.port`",
            bad.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("fix:"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing rendered");
}

#[test]
fn version_and_completion_work_offline() {
    let out = std::process::Command::new(BIN)
        .arg("version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = std::process::Command::new(BIN)
        .args(["completion", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("enable"));
    let out = std::process::Command::new(BIN)
        .args(["render"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit non-zero");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_logs_what_enable_does_on_stderr_and_quiet_logs_nothing() {
    let s = Cluster::digimon(json!({})).await;
    let r = run(&s, &s.enable_args(&["--dry-run"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.is_empty(), "quiet by default: {r:?}");
    let r = run(&s, &s.enable_args(&["-v"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("objects for SidecarInbound"), "{r:?}");
    assert!(r.stderr.contains("planned"), "{r:?}");
    assert!(r.stderr.contains("1/"), "each change is logged: {r:?}");
    assert!(!r.stderr.contains("read ConfigMap"), "-v is not -vv: {r:?}");
    let r = run(&s, &s.enable_args(&["-vv", "--dry-run"])).await;
    assert!(
        r.stderr.contains("read ConfigMap"),
        "-vv shows each read: {r:?}"
    );
}

/// kubectl completes `kubectl mesh ...` through `kubectl_complete-mesh` on PATH (Cobra's
/// protocol): the plugin answers under that name (a link to itself), and kubectl's own
/// completion shows its subcommands, flags and values.
#[test]
fn kubectl_completes_kubectl_mesh() {
    let Ok(out) = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    else {
        println!("SKIPPED kubectl_completes_kubectl_mesh: no kubectl on PATH");
        return;
    };
    assert!(out.status.success());
    let dir = std::env::temp_dir().join(format!("kubectl-mesh-complete-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = TempDir(dir.clone());
    for name in ["kubectl-mesh", "kubectl_complete-mesh"] {
        std::os::unix::fs::symlink(BIN, dir.join(name)).unwrap();
    }
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let complete = |words: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .arg("__complete")
            .arg("mesh")
            .args(words)
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = complete(&["en"]);
    assert!(
        out.starts_with("enable\t") && out.ends_with(":4\n"),
        "{out}"
    );
    let out = complete(&["enable", "--envoy-context", "sidecar-"]);
    assert!(
        out.contains("sidecar-outbound\t") && out.contains("sidecar-inbound\t"),
        "{out}"
    );
    let out = complete(&["check", "--dry-run=s"]);
    assert!(out.starts_with("--dry-run=server\t"), "{out}");
    // -f is a file: the shell completes file names (directive 0).
    assert_eq!(complete(&["enable", "-f", ""]), ":0\n");
    // Without the link kubectl has nothing to ask.
    std::fs::remove_file(dir.join("kubectl_complete-mesh")).unwrap();
    assert!(!complete(&["en"]).contains("enable"));
}

/// `-f -` reads the config from standard input; messages call it <stdin>.
#[test]
fn the_config_comes_from_stdin_with_dash() {
    use std::io::Write;
    let rendered = |input: &[u8]| {
        let mut child = std::process::Command::new(BIN)
            .args([
                "render",
                "-l",
                SERVER,
                "--envoy-context",
                "sidecar-inbound",
                "-f",
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let text = std::fs::read(mesh_yaml()).unwrap();
    let from_stdin = rendered(&text);
    assert!(
        from_stdin.status.success(),
        "{}",
        String::from_utf8_lossy(&from_stdin.stderr)
    );
    let from_file = std::process::Command::new(BIN)
        .args([
            "render",
            "-l",
            SERVER,
            "--envoy-context",
            "sidecar-inbound",
            "-f",
        ])
        .arg(mesh_yaml())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&from_stdin.stdout),
        String::from_utf8_lossy(&from_file.stdout)
    );
    let bad = rendered(b"apiVersion: kubectl-mesh/v1alpha1\nkind: MeshConfig\nhosts: 7\n");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("<stdin>: invalid field `hosts`"),
        "{stderr}"
    );
}

/// 0: fine; 1: ran and found failures; 2: could not run. `version -o yaml|json` is data.
#[test]
fn exit_codes_and_structured_version() {
    let out = std::process::Command::new(BIN)
        .args(["version", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        v["module"]["sha256"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{v}"
    );
    let out = std::process::Command::new(BIN)
        .args(["version", "-o", "yaml"])
        .output()
        .unwrap();
    let y: Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    assert_eq!(y, v);
    // check against nothing: could not run (2), not "checks failed" (1).
    let dir = std::env::temp_dir().join(format!("kubectl-mesh-exit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = TempDir(dir.clone());
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:1'}\nusers:\n- name: u\n  user: {}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL] API reachable"));
}

/// Output that cannot be written is an error: `render`, `import-envoy`, `migrate` and `run
/// --print-config` into a full device (/dev/full) and into a pipe whose reader is gone exit 2
/// and say so, instead of exiting 0 with the output lost.
#[test]
fn output_that_cannot_be_written_exits_non_zero() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/digimon");
    let dir = std::env::temp_dir().join(format!("mesh-cli-write-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let commands: Vec<Vec<std::ffi::OsString>> = vec![
        vec!["render".into(), "-f".into(), example_yaml().into()],
        vec![
            "import-envoy".into(),
            "-f".into(),
            shared.join("standalone-envoy/envoy.yaml").into(),
        ],
        vec![
            "migrate".into(),
            "-f".into(),
            shared.join("k8s-1.15").into(),
        ],
        vec![
            "run".into(),
            "--print-config".into(),
            "--upstream".into(),
            "server:6000=127.0.0.1:9".into(),
            "--upstream".into(),
            "web:8060=127.0.0.1:9".into(),
            "-f".into(),
            example_yaml().into(),
        ],
    ];
    assert!(Path::new("/dev/full").exists(), "/dev/full is needed");
    for args in &commands {
        // Written fine, for reference: the command works and prints something.
        let ok = std::process::Command::new(BIN)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            ok.status.success() && !ok.stdout.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        for (what, stdout) in [("/dev/full", full.into()), ("a closed pipe", writer.into())] {
            let out = std::process::Command::new(BIN)
                .args(args)
                .current_dir(&dir)
                .stdout::<std::process::Stdio>(stdout)
                .stderr(std::process::Stdio::piped())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} into {what}: {stderr}");
            assert!(
                stderr.contains("cannot write the output to stdout"),
                "{args:?} into {what}: {stderr}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
