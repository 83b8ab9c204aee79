//! Compiles the digimon proto (the shared fixture) with protox, so no `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    // examples/digimon/server -> the repository's parent holds shared/.
    let dir = manifest.join("../../../../shared/fixtures/digimon/proto");
    let proto = dir.join("schema.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([&proto], [&dir]).map_err(|e| {
        format!(
            "cannot compile {}: {e}; the digimon fixtures must sit in ../shared next to the repository",
            proto.display()
        )
    })?;
    // The client is generated too: the crate's tests call the server through it.
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
