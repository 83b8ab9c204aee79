//! Embeds the filter module: copies `$MESH_WASM` (or the workspace's release wasm) into OUT_DIR.
//!
//! A missing module is not a build error: an empty file is embedded instead and `render`
//! refuses to run, so `cargo build` works before `make wasm` has ever run.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=MESH_WASM");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let source = match std::env::var("MESH_WASM") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => manifest.join("../target/wasm32-wasip1/release/mesh_filter.wasm"),
    };
    println!("cargo:rerun-if-changed={}", source.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("mesh_filter.wasm");
    let bytes = std::fs::read(&source).unwrap_or_default();
    if bytes.is_empty() {
        println!(
            "cargo:warning=no filter module at {}; this build of kubectl-mesh cannot render (run `make wasm`)",
            source.display()
        );
    }
    if let Err(e) = std::fs::write(&out, bytes) {
        println!("cargo:warning=cannot write {}: {e}", out.display());
    }
}
