//! Which ingress gateway takes the config's hosts, found among the gateways as users install
//! them, pure: istioctl's (`istio: ingressgateway`, usually in istio-system; OpenShift Service
//! Mesh's too), the Helm `gateway` chart's (`istio: ingress` for release `istio-ingress`: the
//! label is the release name without `istio-`, in the release's namespace), and Kubernetes
//! Gateway API gateways of class istio (istiod's Deployment `NAME-istio`, pods labelled
//! `gateway.networking.k8s.io/gateway-name: NAME`). `enable` uses the one that already serves
//! the hosts, or the only one there is, and otherwise refuses, listing what to pass.

use crate::gateway::{selects, serves_anywhere};
use crate::names::GATEWAY_NAME_LABEL;
use crate::options::selector_text;
use crate::plan::template_labels;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::Value;
use std::collections::BTreeMap;

/// How a gateway was installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Install {
    /// `istioctl install` (or OpenShift Service Mesh's control plane): not injected.
    Istioctl,
    /// The Helm `gateway` chart: an injected Deployment (`sidecar.istio.io/inject: "true"`).
    Helm,
    /// A Kubernetes Gateway API `Gateway` of class istio; istiod runs its Deployment.
    GatewayApi {
        /// The Gateway's name (in the Deployment's namespace).
        gateway: String,
    },
}

/// An ingress gateway Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its namespace (where kubectl-mesh's objects for it go).
    pub namespace: String,
    /// The Deployment.
    pub deployment: String,
    /// How it was installed.
    pub install: Install,
    /// The label selecting its pods (`istio=V`, or the Gateway API gateway-name).
    pub selector: BTreeMap<String, String>,
    /// Its pod template's labels (what an Istio Gateway's selector matches).
    pub labels: BTreeMap<String, String>,
}

impl Candidate {
    /// `NAMESPACE/DEPLOYMENT (how; pods LABEL)`.
    pub fn describe(&self) -> String {
        let how = match &self.install {
            Install::Istioctl => "istioctl".to_owned(),
            Install::Helm => "Helm gateway chart".to_owned(),
            Install::GatewayApi { gateway } => format!("Gateway API Gateway {gateway}"),
        };
        format!(
            "{}/{} ({how}; pods {})",
            self.namespace,
            self.deployment,
            selector_text(&self.selector)
        )
    }

    /// The flags that name it.
    pub fn flags(&self) -> String {
        format!("-n {} -l {}", self.namespace, selector_text(&self.selector))
    }
}

/// `istio` label values of gateways that are not ingress gateways.
const NOT_INGRESS: [&str; 2] = ["egressgateway", "eastwestgateway"];

/// The ingress gateway Deployments among `deployments`. Gateway API ones count when
/// `istio_gateway` says their Gateway is Istio's (its class).
pub fn candidates(
    deployments: &[Deployment],
    istio_gateway: impl Fn(&str, &str) -> bool,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for d in deployments {
        let labels = template_labels(d);
        let namespace = d.metadata.namespace.clone().unwrap_or_default();
        let deployment = d.metadata.name.clone().unwrap_or_default();
        let (install, key) = if let Some(gateway) = labels.get(GATEWAY_NAME_LABEL) {
            if !istio_gateway(&namespace, gateway) {
                continue;
            }
            (
                Install::GatewayApi {
                    gateway: gateway.clone(),
                },
                GATEWAY_NAME_LABEL,
            )
        } else if let Some(v) = labels.get("istio") {
            if NOT_INGRESS.iter().any(|n| v.contains(n)) || v == "pilot" || v == "istiod" {
                continue;
            }
            let injected = labels.get("sidecar.istio.io/inject").map(String::as_str)
                == Some("true")
                || crate::plan::template_annotations(d)
                    .get("inject.istio.io/templates")
                    .is_some_and(|t| t.contains("gateway"));
            let install = if injected {
                Install::Helm
            } else {
                Install::Istioctl
            };
            (install, "istio")
        } else {
            continue;
        };
        out.push(Candidate {
            namespace,
            deployment,
            install,
            selector: BTreeMap::from([(key.to_owned(), labels[key].clone())]),
            labels,
        });
    }
    out.sort_by(|a, b| (&a.namespace, &a.deployment).cmp(&(&b.namespace, &b.deployment)));
    out
}

/// The config hosts `c` already serves: through the Istio Gateways that select its pods (for
/// an anchor in its namespace), or its Gateway API Gateway's listeners.
pub fn served(
    c: &Candidate,
    istio_gateways: &[Value],
    k8s_gateways: &[Value],
    hosts: &[String],
) -> Vec<String> {
    match &c.install {
        Install::GatewayApi { gateway } => k8s_gateways
            .iter()
            .filter(|g| {
                g["metadata"]["namespace"] == c.namespace.as_str()
                    && g["metadata"]["name"] == gateway.as_str()
            })
            .flat_map(|g| crate::gateway_api::served_hosts(g, hosts, &c.namespace))
            .collect(),
        _ => hosts
            .iter()
            .filter(|h| {
                istio_gateways
                    .iter()
                    .filter(|g| selects(g, &c.labels))
                    .any(|g| serves_anywhere(g, h, &c.namespace))
            })
            .cloned()
            .collect(),
    }
}

/// What `enable` does about the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Use this one; the line says why.
    Use(Candidate, String),
    /// Cannot tell, or none: the message says what to pass.
    Refuse(String),
}

/// Decides among `found` (each with the hosts it already serves): the only one serving any of
/// `hosts`; else the only one there is; else a refusal listing them with their flags.
pub fn decide(found: &[(Candidate, Vec<String>)], hosts: &[String]) -> Decision {
    let hosts_text = hosts.join(", ");
    let serving: Vec<&(Candidate, Vec<String>)> =
        found.iter().filter(|(_, s)| !s.is_empty()).collect();
    let list = |items: &[&(Candidate, Vec<String>)]| -> String {
        items
            .iter()
            .map(|(c, s)| {
                let serves = match s.is_empty() {
                    true => "serves none of them".to_owned(),
                    false => format!("serves {}", s.join(", ")),
                };
                format!("  - {}: {serves}; pass {}", c.describe(), c.flags())
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    match (serving.as_slice(), found) {
        ([(c, s)], _) => Decision::Use(
            c.clone(),
            format!(
                "gateway: {} already serves {}",
                c.describe(),
                s.join(", ")
            ),
        ),
        ([], [(c, _)]) => Decision::Use(
            c.clone(),
            format!(
                "gateway: {}, the only ingress gateway (none serves {hosts_text} yet)",
                c.describe()
            ),
        ),
        ([], []) => Decision::Refuse(
            "no ingress gateway found: no Deployment whose pods are labelled istio=... (istioctl, the Helm gateway chart) or gateway.networking.k8s.io/gateway-name=... (a Gateway of class istio)\n  fix: install one (istioctl install; helm install istio-ingress istio/gateway -n istio-ingress; or a Gateway API Gateway of class istio), or name the pods with -n NAMESPACE -l LABEL=VALUE".to_owned(),
        ),
        ([], all) => {
            let all: Vec<&(Candidate, Vec<String>)> = all.iter().collect();
            Decision::Refuse(format!(
                "several ingress gateways and none serves {hosts_text}: kubectl-mesh cannot tell which should\n{}\n  fix: pass one of them",
                list(&all)
            ))
        }
        (several, _) => Decision::Refuse(format!(
            "several ingress gateways serve {hosts_text}:\n{}\n  fix: pass the one that should run the filter",
            list(several)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    fn deployment(ns: &str, name: &str, labels: &[(&str, &str)]) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: DeploymentSpec {
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(
                            labels
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .collect(),
                        ),
                        ..Default::default()
                    }),
                    spec: None,
                },
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn installs() -> Vec<Deployment> {
        vec![
            deployment(
                "istio-system",
                "istio-ingressgateway",
                &[("istio", "ingressgateway"), ("app", "istio-ingressgateway")],
            ),
            deployment(
                "istio-system",
                "istio-egressgateway",
                &[("istio", "egressgateway")],
            ),
            deployment(
                "istio-system",
                "istiod",
                &[("istio", "pilot"), ("app", "istiod")],
            ),
            deployment(
                "istio-ingress",
                "istio-ingress",
                &[
                    ("istio", "ingress"),
                    ("app", "istio-ingress"),
                    ("sidecar.istio.io/inject", "true"),
                ],
            ),
            deployment("web", "public-istio", &[(GATEWAY_NAME_LABEL, "public")]),
            deployment("web", "other-nginx", &[(GATEWAY_NAME_LABEL, "nginx")]),
            deployment("digimon", "server", &[("app", "server")]),
        ]
    }

    fn hosts() -> Vec<String> {
        vec!["api.backend.com".into(), "web.backend.com".into()]
    }

    #[test]
    fn the_installs_users_make_are_found() {
        let found = candidates(&installs(), |_, gateway| gateway == "public");
        let described: Vec<String> = found.iter().map(Candidate::describe).collect();
        assert_eq!(
            described,
            [
                "istio-ingress/istio-ingress (Helm gateway chart; pods istio=ingress)",
                "istio-system/istio-ingressgateway (istioctl; pods istio=ingressgateway)",
                "web/public-istio (Gateway API Gateway public; pods gateway.networking.k8s.io/gateway-name=public)",
            ]
        );
        assert_eq!(found[0].flags(), "-n istio-ingress -l istio=ingress");
    }

    #[test]
    fn the_one_serving_the_hosts_wins_else_the_only_one_else_a_refusal() {
        let found = candidates(&installs(), |_, gateway| gateway == "public");
        let helm_gateway = json!({
            "metadata": { "namespace": "istio-ingress", "name": "public" },
            "spec": { "selector": { "istio": "ingress" }, "servers": [
                { "port": { "number": 80, "protocol": "HTTP" }, "hosts": ["*.backend.com"] },
            ]},
        });
        let k8s_gateway = json!({
            "metadata": { "namespace": "web", "name": "public" },
            "spec": { "listeners": [{ "name": "http", "port": 80, "protocol": "HTTP", "hostname": "shop.example" }] },
        });
        let with = |istio: &[Value], k8s: &[Value], set: &[Candidate]| -> Decision {
            let found: Vec<(Candidate, Vec<String>)> = set
                .iter()
                .map(|c| (c.clone(), served(c, istio, k8s, &hosts())))
                .collect();
            decide(&found, &hosts())
        };
        match with(
            std::slice::from_ref(&helm_gateway),
            std::slice::from_ref(&k8s_gateway),
            &found,
        ) {
            Decision::Use(c, why) => {
                assert_eq!(c.namespace, "istio-ingress");
                assert!(
                    why.ends_with("already serves api.backend.com, web.backend.com"),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Nothing serves the hosts and there are three: refused, each with its flags.
        match with(&[], std::slice::from_ref(&k8s_gateway), &found) {
            Decision::Refuse(m) => {
                assert!(
                    m.starts_with("several ingress gateways and none serves"),
                    "{m}"
                );
                assert!(m.contains("pass -n istio-ingress -l istio=ingress"), "{m}");
                assert!(
                    m.contains("pass -n web -l gateway.networking.k8s.io/gateway-name=public"),
                    "{m}"
                );
            }
            other => panic!("{other:?}"),
        }
        // The only one: used though it serves none yet.
        match with(&[], &[], &found[1..2]) {
            Decision::Use(c, why) => {
                assert_eq!(c.deployment, "istio-ingressgateway");
                assert!(why.contains("the only ingress gateway"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // Two serving: refused.
        let catch_all = json!({
            "metadata": { "namespace": "web", "name": "public" },
            "spec": { "listeners": [{ "name": "http", "port": 80, "protocol": "HTTP" }] },
        });
        assert!(matches!(
            with(&[helm_gateway], &[catch_all], &found),
            Decision::Refuse(m) if m.starts_with("several ingress gateways serve")
        ));
        assert!(
            matches!(decide(&[], &hosts()), Decision::Refuse(m) if m.starts_with("no ingress gateway found"))
        );
    }
}
