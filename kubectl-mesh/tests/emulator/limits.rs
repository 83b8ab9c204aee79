//! The sizes the API server refuses, answered as the real one answers (tests/apiserver.rs).

use super::{status, Reply};
use serde_json::Value;

/// etcd's default request limit: the API server answers 500 for an object bigger than this
/// (as the real one does: etcd's error is not mapped to a status of its own).
const ETCD_LIMIT: usize = 1536 * 1024;
/// A ConfigMap's own validation: data and binaryData together.
const CONFIGMAP_LIMIT: usize = 1024 * 1024;

/// The API server's answer to an object it would refuse for its size, if `obj` is one.
pub(super) fn too_large(obj: &Value) -> Option<Reply> {
    let size = |field: &str, decoded: fn(usize) -> usize| -> usize {
        obj[field]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| k.len() + decoded(v.as_str().map_or(0, str::len)))
            .sum()
    };
    // binaryData travels as base64; the limit counts the bytes.
    let configmap_bytes = size("data", |n| n) + size("binaryData", |n| n / 4 * 3);
    if obj["kind"] == "ConfigMap" && configmap_bytes > CONFIGMAP_LIMIT {
        return Some(status(
            422,
            "Invalid",
            format!(
                "ConfigMap is invalid: []: Too long: may not be more than {CONFIGMAP_LIMIT} bytes"
            ),
        ));
    }
    (obj.to_string().len() > ETCD_LIMIT).then(|| {
        status(
            500,
            "InternalError",
            "etcdserver: request is too large".into(),
        )
    })
}
