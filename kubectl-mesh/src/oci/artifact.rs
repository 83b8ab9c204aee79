//! The module as the image istio-agent pulls: one gzipped tar layer holding `plugin.wasm`, an
//! OCI image config and manifest, byte-for-byte the same for the same module, so the manifest
//! digest (what istio-agent checks) is known without asking a registry.

use std::io::Write;

/// Media type of the manifest (OCI image manifest).
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the image config.
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of the one layer: istio-agent's "compat" variant looks for exactly this type on
/// the last layer of an OCI image and for `plugin.wasm` inside it.
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The file istio-agent extracts from the layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";

/// The blobs and manifest of one module image.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The image config (JSON).
    pub config: Vec<u8>,
    /// The layer: a gzipped tar holding [`PLUGIN_FILE`].
    pub layer: Vec<u8>,
    /// The manifest (JSON) naming both.
    pub manifest: Vec<u8>,
}

/// `sha256:HEX` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::module::sha256_hex(bytes))
}

impl Artifact {
    /// Packs `module`. Timestamps, owners and gzip header are fixed, and the JSON is written
    /// by hand (field order cannot depend on serde_json's features), so the digest is stable.
    pub fn new(module: &[u8]) -> Artifact {
        let tar = tar_one_file(PLUGIN_FILE, module);
        let layer = gzip(&tar);
        let config = format!(
            r#"{{"architecture":"wasm","os":"wasip1","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            digest(&tar)
        )
        .into_bytes();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","config":{{"mediaType":"{CONFIG_TYPE}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{LAYER_TYPE}","digest":"{}","size":{}}}]}}"#,
            digest(&config),
            config.len(),
            digest(&layer),
            layer.len()
        )
        .into_bytes();
        Artifact {
            config,
            layer,
            manifest,
        }
    }

    /// The manifest digest (`sha256:HEX`): what istio-agent compares with the WasmPlugin's
    /// `sha256` or the remote source's `sha256` (as HEX).
    pub fn digest(&self) -> String {
        digest(&self.manifest)
    }
}

/// A ustar archive with one regular file (mode 0644, owner 0, time 0).
fn tar_one_file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    let mut put = |at: usize, field: &[u8]| h[at..at + field.len()].copy_from_slice(field);
    put(0, name.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", data.len()).as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    // Two zero blocks end the archive.
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0 a module";

    #[test]
    fn same_module_same_digest_other_module_other_digest() {
        let a = Artifact::new(MODULE);
        assert_eq!(a.digest(), Artifact::new(MODULE).digest());
        assert_ne!(a.digest(), Artifact::new(b"\0asm\x01\0\0\0").digest());
        assert!(a.digest().starts_with("sha256:") && a.digest().len() == 71);
    }

    #[test]
    fn the_layer_is_a_gzipped_tar_with_plugin_wasm() {
        let a = Artifact::new(MODULE);
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&a.layer[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(&tar[..11], b"plugin.wasm");
        assert_eq!(&tar[257..263], b"ustar\0");
        let size = usize::from_str_radix(std::str::from_utf8(&tar[124..135]).unwrap(), 8).unwrap();
        assert_eq!(&tar[512..512 + size], MODULE);
        // The checksum field is what tar computes: the header's bytes with the field as spaces.
        let mut h = tar[..512].to_vec();
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(&tar[148..155], format!("{sum:06o}\0").as_bytes());
        assert_eq!(tar.len() % 512, 0);
    }

    #[test]
    fn the_manifest_names_the_blobs_by_digest_and_size() {
        let a = Artifact::new(MODULE);
        let m: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], MANIFEST_TYPE);
        assert_eq!(m["config"]["mediaType"], CONFIG_TYPE);
        assert_eq!(m["config"]["digest"], digest(&a.config));
        assert_eq!(m["config"]["size"], a.config.len());
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "one layer: istio-agent reads the last one");
        assert_eq!(layers[0]["mediaType"], LAYER_TYPE);
        assert_eq!(layers[0]["digest"], digest(&a.layer));
        assert_eq!(layers[0]["size"], a.layer.len());
        let c: serde_json::Value = serde_json::from_slice(&a.config).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    }
}
