//! How render's output is printed: objects as YAML documents or a `v1` `List`, with the
//! workload changes as comments.

use super::workload::deployment_patch;
use super::Rendered;
use crate::options::{Api, RenderOptions};
use crate::output::SerializeError;
use serde_json::{json, Value};

/// Objects as `kubectl get -o yaml` would print several: `---`-separated documents.
pub fn to_yaml(objects: &[Value]) -> Result<String, SerializeError> {
    let docs = objects
        .iter()
        .map(|o| crate::output::yaml("an object", o))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}

/// Objects as one `v1` `List`, as `kubectl get -o json` prints several.
pub fn to_json(objects: &[Value]) -> String {
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
    // A Value's pretty Display cannot fail.
    format!("{list:#}")
}

/// What `kubectl mesh render` prints: the objects plus, as comments, the workload changes.
pub fn render_text(
    r: &Rendered,
    opts: &RenderOptions,
    json_output: bool,
) -> Result<String, SerializeError> {
    let mut objects = r.objects.clone();
    let patches =
        !r.pod_labels.is_empty() || !r.pod_annotations.is_empty() || r.gateway_pod_spec.is_some();
    if r.gateway && patches {
        objects.push(deployment_patch(
            &opts.gateway_deployment,
            &opts.namespace,
            r,
        ));
    }
    if json_output {
        return Ok(to_json(&objects) + "\n");
    }
    let (major, minor) = opts.istio_version;
    let mut out = format!(
        "# Rendered by kubectl-mesh for Istio {major}.{minor} (--istio-version). `kubectl mesh enable` applies these objects.\n"
    );
    if opts.api != Api::Envoyfilter {
        out.push_str(
            "# The extensions.istio.io API carries the filter; it cannot add routes, so the\n# cluster_header route stays in an EnvoyFilter.\n",
        );
    }
    if r.gateway && !patches {
        out.push_str(
            "# The filter objects name the Gateway (targetRefs): no gateway pod changes.\n",
        );
    } else if r.gateway {
        out.push_str("# The last document is a strategic-merge patch of the gateway Deployment: the label the\n# filter objects select");
        if r.gateway_pod_spec.is_some() {
            out.push_str(" and the module mount (gateways ignore the sidecar.istio.io/userVolume\n# annotations)");
        }
        out.push_str(".\n");
    } else {
        let sel: Vec<String> = opts
            .selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(
            "# Pod template labels and annotations set on every Deployment in {} matching {}:\n",
            opts.namespace,
            sel.join(",")
        ));
        for (k, v) in r.pod_labels.iter().chain(&r.pod_annotations) {
            out.push_str(&format!("#   {k}: {v}\n"));
        }
    }
    out.push_str("---\n");
    Ok(out + &to_yaml(&objects)?)
}
