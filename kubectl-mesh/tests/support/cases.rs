//! The render cases the golden files and the schema tests share: each context, API and module
//! delivery, with a stand-in module so the golden files do not change with every build.

use kubectl_mesh::delivery::{self, Pull, PullPolicy};
use kubectl_mesh::render::{self, Api, Context, Module, RenderOptions, Rendered};
use std::path::PathBuf;

/// A stand-in module: golden files must not change whenever the filter is rebuilt.
pub const FAKE_MODULE: &[u8] = b"\0asm\x01\0\0\0";
pub const FAKE_SHA: &str = "93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476";

pub fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Case {
    pub golden: &'static str,
    /// The config file, relative to the crate.
    pub config: &'static str,
    pub namespace: &'static str,
    pub selector: &'static [(&'static str, &'static str)],
    pub context: Context,
    pub api: Api,
    pub module: Delivery,
}

/// How a case's module reaches the proxy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delivery {
    ConfigMap,
    Https,
    /// An image (its digest implied from [`FAKE_MODULE`]), with pull options.
    Oci {
        policy: Option<PullPolicy>,
        secret: bool,
    },
}

pub const CASES: &[Case] = &[
    Case {
        golden: "digimon-sidecar-inbound",
        config: "tests/fixtures/digimon-server.yaml",
        namespace: "digimon",
        selector: &[("io.kompose.service", "server")],
        context: Context::SidecarInbound,
        api: Api::Envoyfilter,
        module: Delivery::ConfigMap,
    },
    Case {
        golden: "digimon-gateway",
        config: "../examples/digimon/mesh.yaml",
        namespace: "istio-system",
        selector: &[("istio", "ingressgateway")],
        context: Context::Gateway,
        api: Api::Envoyfilter,
        module: Delivery::ConfigMap,
    },
    Case {
        golden: "digimon-sidecar-outbound-remote",
        config: "../examples/digimon/mesh.yaml",
        namespace: "digimon",
        selector: &[("io.kompose.service", "web")],
        context: Context::SidecarOutbound,
        api: Api::Envoyfilter,
        module: Delivery::Https,
    },
    Case {
        golden: "digimon-wasmplugin",
        config: "tests/fixtures/digimon-server.yaml",
        namespace: "digimon",
        selector: &[("io.kompose.service", "server")],
        context: Context::SidecarInbound,
        api: Api::Wasmplugin,
        module: Delivery::ConfigMap,
    },
    Case {
        golden: "digimon-trafficextension-remote",
        config: "../examples/digimon/mesh.yaml",
        namespace: "istio-system",
        selector: &[("istio", "ingressgateway")],
        context: Context::Gateway,
        api: Api::Trafficextension,
        module: Delivery::Https,
    },
    Case {
        golden: "digimon-gateway-oci",
        config: "../examples/digimon/mesh.yaml",
        namespace: "istio-system",
        selector: &[("istio", "ingressgateway")],
        context: Context::Gateway,
        api: Api::Envoyfilter,
        module: Delivery::Oci {
            policy: Some(PullPolicy::Always),
            secret: false,
        },
    },
    Case {
        golden: "digimon-wasmplugin-oci",
        config: "tests/fixtures/digimon-server.yaml",
        namespace: "digimon",
        selector: &[("io.kompose.service", "server")],
        context: Context::SidecarInbound,
        api: Api::Wasmplugin,
        module: Delivery::Oci {
            policy: Some(PullPolicy::IfNotPresent),
            secret: true,
        },
    },
    // A Kubernetes Gateway API gateway (Gateway `public` in digimon): an HTTPRoute anchors the
    // hosts; the filter selects its pods by their gateway-name label (and enable's).
    Case {
        golden: "digimon-gateway-api",
        config: "../examples/digimon/mesh.yaml",
        namespace: "digimon",
        selector: &[("gateway.networking.k8s.io/gateway-name", "public")],
        context: Context::Gateway,
        api: Api::Envoyfilter,
        module: Delivery::ConfigMap,
    },
    // The same with a downloaded module and a WasmPlugin: `targetRefs` names the Gateway, and
    // no pod is touched.
    Case {
        golden: "digimon-gateway-api-wasmplugin-oci",
        config: "../examples/digimon/mesh.yaml",
        namespace: "digimon",
        selector: &[("gateway.networking.k8s.io/gateway-name", "public")],
        context: Context::Gateway,
        api: Api::Wasmplugin,
        module: Delivery::Oci {
            policy: None,
            secret: false,
        },
    },
];

pub fn options(case: &Case) -> RenderOptions {
    RenderOptions {
        name: "kubectl-mesh".into(),
        namespace: case.namespace.into(),
        selector: case
            .selector
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        context: case.context,
        api: case.api,
        module: match case.module {
            Delivery::ConfigMap => Module::ConfigMap(FAKE_MODULE.to_vec()),
            Delivery::Https => Module::Remote {
                url: "https://example.com/mesh_filter.wasm".into(),
                sha256: FAKE_SHA.into(),
                pull: Pull::default(),
            },
            Delivery::Oci { policy, secret } => {
                let pull = Pull {
                    policy,
                    secret: secret.then(|| "registry-credentials".to_owned()),
                };
                let url = "oci://registry.example.com/mesh/filter:v0.1.0";
                delivery::remote(url, None, pull, FAKE_MODULE).unwrap()
            }
        },
        gateway_deployment: kubectl_mesh::enable::load::gateway_deployment(
            &case
                .selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        gateway: Default::default(),
        source: case.config.into(),
        istio_version: kubectl_mesh::render::NEWEST_ISTIO,
    }
}

pub fn config(case: &Case) -> mesh_core::MeshConfig {
    render::load_config(&manifest().join(case.config)).unwrap()
}

pub fn rendered(case: &Case) -> (RenderOptions, Rendered) {
    let opts = options(case);
    let r = render::render(&config(case), &opts).unwrap();
    (opts, r)
}
