//! Step 2: can this cluster take the objects? Kubernetes' version, the Istio kinds the options
//! need, the Istio release istiod runs. Nothing is written.

use super::load::Loaded;
use super::EnableError;
use crate::cluster::{Cluster, ClusterError};
use crate::names::INJECT_ANNOTATION;
use crate::options::{parse_istio_version, Api, Context, NEWEST_ISTIO};
use crate::ossm::{self, ControlPlane, Membership};
use crate::plan::{self, MIN_KUBERNETES};

/// What preflight learned about the cluster.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Kubernetes `(major, minor)`.
    pub kubernetes: (u32, u32),
    /// The Istio release the objects are for.
    pub istio: (u32, u32),
    /// OpenShift Service Mesh 2.x's control plane, when that is the mesh.
    pub ossm: Option<ControlPlane>,
}

/// Checks the cluster and reads the Istio release (unless `--istio-version` gave it); returns
/// what it learned and the lines to print.
pub async fn preflight(
    cluster: &Cluster,
    loaded: &Loaded,
) -> Result<(Facts, Vec<String>), EnableError> {
    let opts = &loaded.opts;
    let mut lines = Vec::new();
    let info = cluster.version().await?;
    let (min_major, min_minor) = MIN_KUBERNETES;
    let version = plan::parse_version(&info).ok_or_else(|| {
        EnableError::Preflight(format!(
            "cannot parse the server version {:?}",
            info.git_version
        ))
    })?;
    if version < MIN_KUBERNETES {
        return Err(EnableError::Preflight(format!(
            "the cluster runs Kubernetes {}.{}, Istio needs {min_major}.{min_minor} or newer\n  fix: upgrade the cluster",
            version.0, version.1
        )));
    }
    let served = cluster.resources("networking.istio.io/v1alpha3").await?;
    if !served.iter().any(|r| r == "envoyfilters") {
        return Err(EnableError::Preflight(
            "Istio is not installed: the API server does not serve networking.istio.io/v1alpha3 EnvoyFilter\n  fix: install Istio (istioctl install) first".into(),
        ));
    }
    if opts.context == Context::Gateway {
        let served = cluster.resources("networking.istio.io/v1beta1").await?;
        for plural in ["gateways", "virtualservices"] {
            if !served.iter().any(|r| r == plural) {
                return Err(EnableError::Preflight(format!(
                    "the API server does not serve networking.istio.io/v1beta1 {plural}, which the gateway context needs to bind the config's hosts\n  fix: use an Istio with networking.istio.io/v1beta1 (1.9 or newer)"
                )));
            }
        }
    }
    let extension = match opts.api {
        Api::Envoyfilter => None,
        Api::Wasmplugin => Some(("wasmplugins", "WasmPlugin", "1.12")),
        Api::Trafficextension => Some(("trafficextensions", "TrafficExtension", "1.30")),
    };
    if let Some((plural, kind, since)) = extension {
        // The kind, not just the group: TrafficExtension is newer than WasmPlugin.
        let served = cluster.resources("extensions.istio.io/v1alpha1").await?;
        if !served.iter().any(|r| r == plural) {
            return Err(EnableError::Preflight(format!(
                "this Istio does not serve extensions.istio.io/v1alpha1 {kind} (Istio {since} or newer has it)\n  fix: use --api envoyfilter{}, or upgrade Istio",
                if opts.api == Api::Trafficextension { " or --api wasmplugin" } else { "" }
            )));
        }
    }
    lines.push(format!(
        "preflight ok: {} (Kubernetes {}.{}), Istio EnvoyFilter served",
        cluster.url(),
        version.0,
        version.1
    ));
    let ossm = ossm::read::control_plane(cluster, &loaded.cfg.namespace).await?;
    if let Some(cp) = &ossm {
        lines.push(format!(
            "mesh: OpenShift Service Mesh {} (ServiceMeshControlPlane {}/{}): sidecars are injected by the pod annotation {INJECT_ANNOTATION}, in member namespaces only",
            cp.version.as_deref().unwrap_or("2.x"),
            cp.namespace,
            cp.name
        ));
        let mut namespaces = vec![loaded.cfg.namespace.clone()];
        if opts.context != Context::Gateway {
            namespaces.push(opts.namespace.clone());
        }
        namespaces.dedup();
        for ns in namespaces {
            match ossm::read::membership(cluster, cp, &ns).await? {
                Membership::Member => {}
                Membership::Pending => lines.push(format!(
                    "  warning: namespace {ns} is listed in the member roll but OpenShift Service Mesh has not configured it yet"
                )),
                Membership::NotMember => {
                    return Err(EnableError::Preflight(format!(
                        "namespace {ns} is not a member of OpenShift Service Mesh's control plane {}/{}: its istiod ignores it (no sidecars, no services for the filter to route to)\n  fix: {}",
                        cp.namespace,
                        cp.name,
                        ossm::join_command(&ns, cp)
                    )))
                }
            }
        }
    }
    let istio = match (
        loaded.istio_version_given,
        ossm.as_ref().and_then(ControlPlane::istio),
    ) {
        (true, _) => opts.istio_version,
        (false, Some((major, minor))) => {
            lines.push(format!(
                "istio: objects for Istio {major}.{minor} (what OpenShift Service Mesh {} ships; --istio-version overrides)",
                ossm.as_ref().and_then(|c| c.version.clone()).unwrap_or_default()
            ));
            (major, minor)
        }
        (false, None) => {
            // Best effort: reading istiod needs rights a user who may apply the objects need
            // not have; then the newest release is assumed and said so.
            let (detected, why) = match istio_version(cluster).await {
                Ok(Some(v)) => (Some(v), "istiod's image tag".to_owned()),
                Ok(None) => (
                    None,
                    "no app=istiod Deployment with a release tag found, so the newest known"
                        .to_owned(),
                ),
                Err(e) => (
                    None,
                    format!("istiod's version could not be read ({e}), so the newest known"),
                ),
            };
            let (major, minor) = detected.unwrap_or(NEWEST_ISTIO);
            lines.push(format!(
                "istio: objects for Istio {major}.{minor} ({why}; --istio-version overrides)"
            ));
            (major, minor)
        }
    };
    Ok((
        Facts {
            kubernetes: version,
            istio,
            ossm,
        },
        lines,
    ))
}

/// The Istio release istiod runs, from its image tag (`.../pilot:1.27.3-distroless` is 1.27):
/// in `istio-system` where installs put it, else anywhere; `None` when no `app=istiod`
/// Deployment is found or its tag is not a release.
pub async fn istio_version(cluster: &Cluster) -> Result<Option<(u32, u32)>, ClusterError> {
    let mut istiods = cluster.deployments("istio-system", "app=istiod").await?;
    if istiods.is_empty() {
        istiods = cluster.deployments_everywhere("app=istiod").await?;
    }
    Ok(istiods
        .iter()
        .filter_map(|d| d.spec.template.spec.as_ref())
        .flat_map(|s| &s.containers)
        .filter_map(|c| c.image.as_deref())
        .filter_map(|image| image.rsplit_once(':').map(|(_, tag)| tag))
        .filter_map(parse_istio_version)
        // Istio releases are 1.x (OpenShift Service Mesh tags istiod with its own 2.x).
        .filter(|(major, _)| *major == 1)
        .min())
}
