//! What `make release` produced, as a user gets it: the archives match their sha256 files and
//! the krew manifest, real krew (built from its Go module) installs the x86_64 archive into a
//! temporary KREW_ROOT and kubectl finds `kubectl mesh` there, a wrong digest is refused, both
//! binaries are static ELF files of their architecture, and the aarch64 one answers under
//! qemu-user. `make test-release` builds the archives and the tools first; a missing piece is
//! a failure, never a skip.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mesh_tests::temp::TempDir;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const X86_64: &str = "x86_64-unknown-linux-musl";
const AARCH64: &str = "aarch64-unknown-linux-musl";

fn env_path(var: &str) -> PathBuf {
    let value = std::env::var_os(var)
        .unwrap_or_else(|| panic!("${var} is not set: run this suite with `make test-release`"));
    let path = PathBuf::from(value);
    assert!(path.exists(), "${var}: {} does not exist", path.display());
    path
}

fn dist() -> PathBuf {
    env_path("MESH_RELEASE_DIR")
}

fn archive(target: &str) -> PathBuf {
    dist().join(format!("kubectl-mesh-v{VERSION}-{target}.tar.gz"))
}

fn sha256_file(path: &Path) -> String {
    kubectl_mesh::module::sha256_hex(&std::fs::read(path).unwrap())
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(dist().join("mesh.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    mesh_tests::temp::output_text(out)
}

/// The archive unpacked with tar, as a user would.
fn unpack(target: &str, into: &Path) -> PathBuf {
    let out = run(Command::new("tar")
        .arg("-xzf")
        .arg(archive(target))
        .arg("-C")
        .arg(into));
    assert!(out.status.success(), "{}", text(&out));
    into.join("kubectl-mesh")
}

/// What `kubectl mesh version` must say for this build: the crate version and the module
/// `make wasm` built (the one `make release` embedded).
fn expected_version() -> String {
    let module = std::fs::read(env_path("MESH_WASM")).unwrap();
    format!(
        "kubectl-mesh {VERSION}\nfilter module: sha256:{} ({} bytes)\n",
        kubectl_mesh::module::sha256_hex(&module),
        module.len()
    )
}

fn krew_install(root: &Path, manifest: &Path, archive: &Path) -> Output {
    run(Command::new(env_path("MESH_KREW"))
        .arg("install")
        .arg(format!("--manifest={}", manifest.display()))
        .arg(format!("--archive={}", archive.display()))
        .env("KREW_ROOT", root)
        .env("KREW_NO_UPGRADE_CHECK", "1"))
}

#[test]
fn every_crate_carries_the_license_file_and_its_name() {
    let root = mesh_tests::workspace_root();
    let license = std::fs::read_to_string(root.join("LICENSE")).unwrap();
    assert!(
        license.contains("Apache License") && license.contains("Version 2.0, January 2004"),
        "LICENSE is the Apache-2.0 text"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = run(Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(&root));
    assert!(out.status.success(), "{}", text(&out));
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    assert!(packages.len() >= 9, "every workspace crate listed");
    for p in packages {
        assert_eq!(p["license"], "Apache-2.0", "crate {}", p["name"]);
    }
    // Every archive ships that very text next to the binary.
    for target in [X86_64, AARCH64] {
        let dir = TempDir::new(&format!("release-license-{target}")).unwrap();
        unpack(target, &dir.0);
        assert_eq!(
            std::fs::read_to_string(dir.0.join("LICENSE")).unwrap(),
            license
        );
        assert!(dir.0.join("README.md").is_file());
    }
}

#[test]
fn archives_match_their_sha256_files_and_the_krew_manifest() {
    let m = manifest();
    assert_eq!(
        m["metadata"]["name"], "mesh",
        "kubectl mesh <=> plugin mesh"
    );
    assert_eq!(m["spec"]["version"], format!("v{VERSION}"));
    let platforms = m["spec"]["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2);
    for (target, arch) in [(X86_64, "amd64"), (AARCH64, "arm64")] {
        let path = archive(target);
        let sha = sha256_file(&path);
        let name = path.file_name().unwrap().to_str().unwrap();
        let line = std::fs::read_to_string(dist().join(format!("{name}.sha256"))).unwrap();
        assert_eq!(line, format!("{sha}  {name}\n"), "sha256sum -c format");
        let p = platforms
            .iter()
            .find(|p| p["selector"]["matchLabels"]["arch"] == arch)
            .unwrap_or_else(|| panic!("no {arch} platform in the manifest"));
        assert_eq!(p["selector"]["matchLabels"]["os"], "linux");
        assert_eq!(p["sha256"], sha.as_str(), "{arch}");
        let uri = p["uri"].as_str().unwrap();
        assert!(uri.starts_with("https://") && uri.ends_with(&format!("/v{VERSION}/{name}")));
        assert_eq!(p["bin"], "kubectl-mesh");
    }
}

#[test]
fn krew_installs_the_archive_and_kubectl_runs_the_plugin() {
    let root = TempDir::new("release-krew").unwrap();
    let manifest = dist().join("mesh.yaml");
    let out = krew_install(&root.0, &manifest, &archive(X86_64));
    assert!(out.status.success(), "krew install: {}", text(&out));
    let bin = root.0.join("bin/kubectl-mesh");
    assert!(
        bin.exists(),
        "krew linked {}: {}",
        bin.display(),
        text(&out)
    );
    assert!(root.0.join("receipts/mesh.yaml").is_file());
    // Only krew's bin directory and the system's: no other kubectl-mesh can answer.
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        root.0.join("bin").display()
    );
    let out = run(Command::new("kubectl")
        .args(["mesh", "version"])
        .env("PATH", &path)
        .env("HOME", &root.0));
    assert!(out.status.success(), "kubectl mesh version: {}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected_version());
    let out = run(Command::new("kubectl")
        .args(["plugin", "list"])
        .env("PATH", &path)
        .env("HOME", &root.0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&bin.display().to_string()),
        "{}",
        text(&out)
    );
}

#[test]
fn krew_refuses_an_archive_that_does_not_match_the_manifest_digest() {
    let root = TempDir::new("release-krew-wrong").unwrap();
    let sha = sha256_file(&archive(X86_64));
    let wrong = format!(
        "{}{}",
        &sha[..63],
        if sha.ends_with('0') { '1' } else { '0' }
    );
    let text_manifest = std::fs::read_to_string(dist().join("mesh.yaml")).unwrap();
    assert!(text_manifest.contains(&sha));
    let manifest = root.0.join("mesh.yaml");
    std::fs::write(&manifest, text_manifest.replace(&sha, &wrong)).unwrap();
    let out = krew_install(&root.0.join("root"), &manifest, &archive(X86_64));
    assert!(
        !out.status.success(),
        "installed despite the digest: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("checksum does not match"),
        "{}",
        text(&out)
    );
    assert!(!root.0.join("root/bin/kubectl-mesh").exists());
}

/// The parts of an ELF header that say whether a binary runs anywhere on its architecture.
#[derive(Debug, PartialEq)]
struct Elf {
    machine: u16,
    /// A PT_INTERP header: the binary needs a dynamic loader.
    interpreter: bool,
    /// DT_NEEDED entries: shared libraries it loads.
    needed: usize,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> usize {
    usize::try_from(u64::from_le_bytes(b[at..at + 8].try_into().unwrap())).unwrap()
}

/// Reads a 64-bit little-endian ELF file's header and program headers.
fn elf(path: &Path) -> Elf {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"\x7fELF", "{} is an ELF file", path.display());
    assert_eq!(b[4], 2, "64-bit");
    assert_eq!(b[5], 1, "little-endian");
    assert!(
        [2, 3].contains(&u16_at(&b, 16)),
        "ET_EXEC, or ET_DYN for static-pie"
    );
    let (phoff, phentsize, phnum) = (
        u64_at(&b, 32),
        usize::from(u16_at(&b, 54)),
        usize::from(u16_at(&b, 56)),
    );
    let mut e = Elf {
        machine: u16_at(&b, 18),
        interpreter: false,
        needed: 0,
    };
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        match u32_at(&b, ph) {
            3 => e.interpreter = true,
            2 => {
                let (off, size) = (u64_at(&b, ph + 8), u64_at(&b, ph + 32));
                e.needed += (off..off + size)
                    .step_by(16)
                    .filter(|&d| u64_at(&b, d) == 1)
                    .count();
            }
            _ => {}
        }
    }
    e
}

#[test]
fn both_binaries_are_static_executables_of_their_architecture() {
    for (target, machine) in [(X86_64, 62u16), (AARCH64, 183u16)] {
        let dir = TempDir::new(&format!("release-elf-{target}")).unwrap();
        let bin = unpack(target, &dir.0);
        let got = elf(&bin);
        assert_eq!(
            got,
            Elf {
                machine,
                interpreter: false,
                needed: 0
            },
            "{target}: {}",
            bin.display()
        );
    }
}

#[test]
fn the_aarch64_binary_answers_under_qemu() {
    let dir = TempDir::new("release-qemu").unwrap();
    let bin = unpack(AARCH64, &dir.0);
    let out = run(Command::new("qemu-aarch64").arg(&bin).arg("version"));
    assert!(
        out.status.success(),
        "qemu-aarch64 (make qemu-user installs it): {}",
        text(&out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected_version());
}
