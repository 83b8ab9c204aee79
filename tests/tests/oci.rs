//! `kubectl mesh module push` against a real registry (Debian's docker-registry, the CNCF
//! distribution server, on loopback with a temporary store), and the module pulled back the
//! way istio-agent pulls it (istio's pkg/wasm: the manifest by tag, its digest compared with
//! the expected checksum, the last layer by media type, `plugin.wasm` out of the tar+gzip).
//! The binary is the released x86_64 one (`make release`; MESH_PLUGIN_BIN overrides).

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kubectl_mesh::module::sha256_hex;
use mesh_tests::client::{Request, Response};
use mesh_tests::temp::TempDir;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// A bcrypt hash of "test-password" (made once with Python's crypt; the registry checks it).
const HTPASSWD: &str = "mesh:$2b$05$GR1SW5C6ZxYETfbmdBB5cu94ZEcd/f.kx7Vgtf6IPLnwC0X.n.3di\n";
const PASSWORD: &str = "test-password";

/// docker-registry serving a temporary store on 127.0.0.1; stopped when dropped.
struct Registry {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Registry {
    fn start(name: &str, basic_auth: bool) -> Registry {
        let dir = TempDir::new(&format!("oci-registry-{name}")).unwrap();
        let port = envoy_process::free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.0.join("data").display()
        );
        if basic_auth {
            std::fs::write(dir.0.join("htpasswd"), HTPASSWD).unwrap();
            config += &format!(
                "auth:\n  htpasswd:\n    realm: mesh-test\n    path: {}\n",
                dir.0.join("htpasswd").display()
            );
        }
        std::fs::write(dir.0.join("config.yml"), config).unwrap();
        let bin = std::env::var("MESH_REGISTRY").unwrap_or_else(|_| "docker-registry".into());
        let child = Command::new(&bin)
            .arg("serve")
            .arg(dir.0.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("registry.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{bin}: {e} (`make test-release` installs docker-registry)")
            });
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Request::get("127.0.0.1", "/v2/").send(port).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    fn url(&self, repo_tag: &str) -> String {
        format!("oci://127.0.0.1:{}/{repo_tag}", self.port)
    }

    fn get(&self, path: &str, accept: &str, auth: Option<&str>) -> Response {
        let mut req =
            Request::get(&format!("127.0.0.1:{}", self.port), path).header("accept", accept);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send(self.port).unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The kubectl-mesh under test: the released x86_64 binary, unpacked once per process.
fn plugin() -> PathBuf {
    if let Some(bin) = std::env::var_os("MESH_PLUGIN_BIN") {
        return PathBuf::from(bin);
    }
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let dist = PathBuf::from(
            std::env::var_os("MESH_RELEASE_DIR")
                .expect("MESH_RELEASE_DIR: run `make test-release`"),
        );
        let archive = dist.join(format!(
            "kubectl-mesh-v{}-x86_64-unknown-linux-musl.tar.gz",
            env!("CARGO_PKG_VERSION")
        ));
        let dir = std::env::temp_dir().join(format!("mesh-oci-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&dir)
            .arg("kubectl-mesh")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {out:?}", archive.display());
        dir.join("kubectl-mesh")
    })
    .clone()
}

/// The module `make wasm` built, which the binary embeds.
fn module() -> Vec<u8> {
    std::fs::read(std::env::var("MESH_WASM").expect("MESH_WASM: run through make")).unwrap()
}

fn mesh(args: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(plugin());
    cmd.args(args)
        .env_remove("DOCKER_CONFIG")
        .env("HOME", std::env::temp_dir().join("mesh-oci-no-home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    mesh_tests::temp::output_text(out)
}

/// The `digest: sha256:HEX` line `module push` prints, as HEX.
fn pushed_digest(out: &Output) -> String {
    assert!(out.status.success(), "module push: {}", text(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("digest: sha256:"))
        .unwrap_or_else(|| panic!("no digest line: {stdout}"));
    line.to_owned()
}

/// istio-agent's pull, step by step as in istio's pkg/wasm (cache.go, imagefetcher.go).
fn agent_pull(
    registry: &Registry,
    repo: &str,
    tag: &str,
    checksum: &str,
    auth: Option<&str>,
) -> Result<Vec<u8>, String> {
    // remote.Get: the manifest by tag, accepting OCI and Docker manifests.
    let accept = format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}");
    let m = registry.get(&format!("/v2/{repo}/manifests/{tag}"), &accept, auth);
    if m.status != 200 {
        return Err(format!(
            "could not fetch manifest: {} {}",
            m.status,
            String::from_utf8_lossy(&m.body)
        ));
    }
    // img.Digest(): the sha256 of the manifest bytes, compared with the configured checksum.
    let digest = sha256_hex(&m.body);
    assert_eq!(
        m.header("docker-content-digest"),
        Some(format!("sha256:{digest}").as_str())
    );
    if !checksum.is_empty() && digest != checksum {
        return Err(format!(
            "module downloaded has checksum {digest}, which does not match: {checksum}"
        ));
    }
    let manifest: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let blob = |layer: &serde_json::Value| -> Vec<u8> {
        let d = layer["digest"].as_str().unwrap();
        let b = registry.get(&format!("/v2/{repo}/blobs/{d}"), "*/*", auth);
        assert_eq!(b.status, 200, "blob {d}");
        assert_eq!(
            format!("sha256:{}", sha256_hex(&b.body)),
            d,
            "blob content matches its digest"
        );
        b.body
    };
    let last = layers
        .last()
        .ok_or("number of layers must be greater than zero")?;
    let want = if manifest["mediaType"] == DOCKER_MANIFEST {
        DOCKER_LAYER
    } else {
        OCI_LAYER
    };
    let wasm = if last["mediaType"] == want {
        // The compat variant: plugin.wasm inside the last layer's tar+gzip.
        extract_plugin_wasm(&blob(last))?
    } else if layers.len() == 2 {
        // The oci variant: the raw module in the layer of the Wasm content type.
        let l = layers
            .iter()
            .find(|l| l["mediaType"] == WASM_LAYER)
            .ok_or("no wasm layer")?;
        blob(l)
    } else {
        return Err(format!(
            "invalid media type {} (expect {want})",
            last["mediaType"]
        ));
    };
    // isValidWasmBinary: the magic number and version 1.
    if !wasm.starts_with(b"\0asm\x01\0\0\0") {
        return Err("fetched Wasm binary is invalid".into());
    }
    Ok(wasm)
}

/// extractWasmPluginBinary: walks the tar for an entry whose base name is plugin.wasm.
fn extract_plugin_wasm(layer: &[u8]) -> Result<Vec<u8>, String> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(layer)
        .read_to_end(&mut tar)
        .map_err(|e| format!("failed to parse layer as tar.gz: {e}"))?;
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at] != 0 {
        let h = &tar[at..at + 512];
        let name = String::from_utf8_lossy(&h[..100])
            .trim_end_matches('\0')
            .to_owned();
        let size_text = String::from_utf8_lossy(&h[124..136]);
        let size = usize::from_str_radix(size_text.trim_matches(['\0', ' ']), 8)
            .map_err(|e| e.to_string())?;
        let data = at + 512;
        if name.rsplit('/').next() == Some("plugin.wasm") {
            return Ok(tar[data..data + size].to_vec());
        }
        at = data + size.div_ceil(512) * 512;
    }
    Err("plugin.wasm not found in the archive".into())
}

#[test]
fn pushed_module_is_what_istio_agent_pulls_and_renders_with_its_digest() {
    let registry = Registry::start("anonymous", false);
    let url = registry.url("mesh/filter:v1");
    let out = mesh(&["module", "push", &url], None, &[]);
    let digest = pushed_digest(&out);
    let pulled = agent_pull(&registry, "mesh/filter", "v1", &digest, None).unwrap();
    assert!(
        pulled == module(),
        "the pulled plugin.wasm is the embedded module"
    );
    // Pushing again changes nothing: same bytes, same digest.
    assert_eq!(
        pushed_digest(&mesh(&["module", "push", &url], None, &[])),
        digest
    );
    // `module digest` knows it offline, and render implies it for the tag.
    let offline = mesh(&["module", "digest"], None, &[]);
    assert!(
        String::from_utf8_lossy(&offline.stdout).contains(&format!("image:  sha256:{digest}")),
        "{}",
        text(&offline)
    );
    let config = mesh_tests::workspace_root().join("examples/digimon/mesh.yaml");
    for api in ["envoyfilter", "wasmplugin"] {
        let out = mesh(
            &[
                "render",
                "-f",
                config.to_str().unwrap(),
                "--api",
                api,
                "--module-url",
                &url,
                "-o",
                "json",
            ],
            None,
            &[],
        );
        assert!(out.status.success(), "{}", text(&out));
        let rendered = String::from_utf8_lossy(&out.stdout);
        assert!(
            rendered.contains(&format!("\"sha256\": \"{digest}\"")),
            "{api}: {rendered}"
        );
    }
}

#[test]
fn a_wrong_digest_is_refused() {
    let registry = Registry::start("wrong", false);
    let digest = pushed_digest(&mesh(
        &["module", "push", &registry.url("mesh/filter:v1")],
        None,
        &[],
    ));
    let module_sha = sha256_hex(&module());
    // The .wasm file's own sha256 is not what the agent checks for an image.
    let err = agent_pull(&registry, "mesh/filter", "v1", &module_sha, None).unwrap_err();
    assert!(err.contains("does not match"), "{err}");
    assert!(agent_pull(&registry, "mesh/filter", "v1", &digest, None).is_ok());
    // Pushing under a digest that is not the module image's is refused before anything is sent.
    let other = format!("mesh/filter@sha256:{module_sha}");
    let out = mesh(&["module", "push", &registry.url(&other)], None, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("names digest"), "{}", text(&out));
    let m = registry.get("/v2/mesh/filter/manifests/latest", OCI_MANIFEST, None);
    assert_eq!(m.status, 404, "nothing was pushed under latest");
}

#[test]
fn a_registry_with_basic_auth_takes_flags_or_docker_config() {
    let registry = Registry::start("basic", true);
    let url = registry.url("mesh/filter:v2");
    let out = mesh(&["module", "push", &url], None, &[]);
    assert!(
        !out.status.success(),
        "pushed without credentials: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("asks for credentials") && text(&out).contains("--password-stdin"),
        "{}",
        text(&out)
    );
    let wrong = mesh(
        &[
            "module",
            "push",
            &url,
            "--username",
            "mesh",
            "--password-stdin",
        ],
        Some("nope\n"),
        &[],
    );
    assert!(!wrong.status.success(), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("refused the credentials"),
        "{}",
        text(&wrong)
    );
    let digest = pushed_digest(&mesh(
        &[
            "module",
            "push",
            &url,
            "--username",
            "mesh",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
        &[],
    ));
    // docker login's config.json, found through DOCKER_CONFIG.
    let dir = TempDir::new("oci-docker-config").unwrap();
    let auth = kubectl_mesh::oci::auth::Credentials {
        username: "mesh".into(),
        password: PASSWORD.into(),
    }
    .basic();
    let entry = auth.trim_start_matches("Basic ");
    std::fs::write(
        dir.0.join("config.json"),
        format!(
            r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"{entry}"}}}}}}"#,
            registry.port
        ),
    )
    .unwrap();
    let again = mesh(
        &["module", "push", &registry.url("mesh/filter:v3")],
        None,
        &[("DOCKER_CONFIG", &dir.0)],
    );
    assert_eq!(pushed_digest(&again), digest);
    assert!(
        agent_pull(&registry, "mesh/filter", "v3", &digest, None).is_err(),
        "anonymous pull refused"
    );
    let pulled = agent_pull(&registry, "mesh/filter", "v3", &digest, Some(&auth)).unwrap();
    assert!(pulled == module());
}
