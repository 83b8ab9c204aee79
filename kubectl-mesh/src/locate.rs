//! Where one `enable`'s objects are, so `check` and `disable` without flags find what `enable`
//! without flags made: the objects live where the filter runs (a gateway's namespace, or the
//! workloads'), which is not the kubeconfig's namespace in general.

use crate::cluster::{Cluster, ClusterError};
use crate::names::{CONFIG_NAMESPACE_LABEL, MANAGED_BY_LABEL, MANAGER};

/// The kinds that carry an instance's filter, named like the instance.
pub const FILTER_KINDS: [(&str, &str); 3] = [
    ("networking.istio.io/v1alpha3", "EnvoyFilter"),
    ("extensions.istio.io/v1alpha1", "WasmPlugin"),
    ("extensions.istio.io/v1alpha1", "TrafficExtension"),
];

/// Why the instance could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// Several namespaces hold an instance of that name.
    #[error("kubectl-mesh instance {name} is in several namespaces: {}\n  fix: pass -n NAMESPACE", .namespaces.join(", "))]
    Ambiguous {
        /// The instance (`--name`).
        name: String,
        /// Where it was found.
        namespaces: Vec<String>,
    },
    /// Listing failed otherwise.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Where to look, and the line saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The namespace.
    pub namespace: String,
    /// How it was found (printed; `None` for `-n`).
    pub how: Option<String>,
}

/// One namespace holding instance `name`'s filter object, and the config namespace it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where the object is.
    pub namespace: String,
    /// Its `kubectl-mesh/config-namespace` label (the app's namespace), if any.
    pub config_namespace: Option<String>,
}

/// Where instance `name` is: `-n` wins; else, among the namespaces holding its filter object,
/// the one that belongs to `app` (the kubeconfig's namespace, or the config's with `-f`): the
/// namespace itself, or a gateway's namespace holding objects for that app's config; else, if
/// the only instance there is has no app label (an older kubectl-mesh made it), that one; else
/// `app` itself, saying where the others are (never another app's: `disable` would remove
/// it). `found` is `None` when the user may not list across namespaces.
pub fn decide(
    name: &str,
    flag: Option<&str>,
    found: Option<Vec<Found>>,
    app: &str,
) -> Result<Located, LocateError> {
    if let Some(ns) = flag {
        return Ok(Located {
            namespace: ns.to_owned(),
            how: None,
        });
    }
    let Some(found) = found else {
        return Ok(Located {
            namespace: app.to_owned(),
            how: Some(format!(
                "looking in namespace {app}: you may not list kubectl-mesh's objects in every namespace (pass -n where enable put them)"
            )),
        });
    };
    let namespaces = |pick: &dyn Fn(&Found) -> bool| {
        let mut v: Vec<String> = found
            .iter()
            .filter(|f| pick(f))
            .map(|f| f.namespace.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mine = namespaces(&|f| f.namespace == app || f.config_namespace.as_deref() == Some(app));
    let all = namespaces(&|_| true);
    // Objects of a version that did not label them with their app: anyone's.
    let unlabelled = namespaces(&|f| f.config_namespace.is_none());
    let found_in = |one: &str| Located {
        namespace: one.to_owned(),
        how: Some(format!(
            "kubectl-mesh instance {name} is in namespace {one}"
        )),
    };
    match (mine.as_slice(), all.as_slice()) {
        ([one], _) => Ok(found_in(one)),
        ([], [one]) if unlabelled.len() == 1 => Ok(found_in(one)),
        ([], []) => Ok(Located {
            namespace: app.to_owned(),
            how: Some(format!(
                "no kubectl-mesh instance {name} in any namespace; looking in namespace {app}"
            )),
        }),
        // Other apps' instances only: this app has none yet.
        ([], others) => Ok(Located {
            namespace: app.to_owned(),
            how: Some(format!(
                "no kubectl-mesh instance {name} for namespace {app} (there are in {}: pass -n for one of them); looking in namespace {app}",
                others.join(", ")
            )),
        }),
        (several, _) => Err(LocateError::Ambiguous {
            name: name.to_owned(),
            namespaces: several.to_vec(),
        }),
    }
}

/// Finds instance `name` (see [`decide`]): its filter objects are listed in every namespace;
/// a user who may not do that is told, and `app` is used.
pub async fn locate(
    cluster: &Cluster,
    name: &str,
    flag: Option<&str>,
    app: &str,
) -> Result<Located, LocateError> {
    if flag.is_some() {
        return decide(name, flag, None, app);
    }
    let mut found = Vec::new();
    let selector = format!("{MANAGED_BY_LABEL}={MANAGER}");
    for (api_version, kind) in FILTER_KINDS {
        match cluster.list_everywhere(api_version, kind, &selector).await {
            Ok(objects) => found.extend(
                objects
                    .iter()
                    .filter(|o| o["metadata"]["name"] == name)
                    .filter_map(|o| {
                        Some(Found {
                            namespace: o["metadata"]["namespace"].as_str()?.to_owned(),
                            config_namespace: o["metadata"]["labels"][CONFIG_NAMESPACE_LABEL]
                                .as_str()
                                .map(str::to_owned),
                        })
                    }),
            ),
            Err(e) if e.code() == Some(403) => return decide(name, None, None, app),
            Err(e) => return Err(e.into()),
        }
    }
    decide(name, None, Some(found), app)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ns: &str, app: Option<&str>) -> Found {
        Found {
            namespace: ns.into(),
            config_namespace: app.map(str::to_owned),
        }
    }

    #[test]
    fn the_flag_then_the_apps_namespaces_then_the_one_namespace_then_the_app() {
        let d = |flag, found| decide("kubectl-mesh", flag, found, "digimon").unwrap();
        assert_eq!(
            d(Some("x"), Some(vec![at("istio-system", None)])).namespace,
            "x"
        );
        // The gateway's objects for the digimon config, though other apps have instances too.
        let found = vec![
            at("istio-system", Some("digimon")),
            at("shop", Some("shop")),
            at("istio-ingress", Some("weather")),
        ];
        let gw = d(None, Some(found));
        assert_eq!(gw.namespace, "istio-system");
        assert_eq!(
            gw.how.as_deref(),
            Some("kubectl-mesh instance kubectl-mesh is in namespace istio-system")
        );
        // The app's own namespace holding it (a sidecar instance).
        let found = vec![at("digimon", Some("digimon")), at("shop", Some("shop"))];
        assert_eq!(d(None, Some(found)).namespace, "digimon");
        // None of the app's: the one there is.
        assert_eq!(
            d(None, Some(vec![at("istio-ingress", None)])).namespace,
            "istio-ingress"
        );
        let none = d(None, Some(vec![]));
        assert_eq!(none.namespace, "digimon");
        assert!(none.how.unwrap().starts_with("no kubectl-mesh instance"));
        let hidden = d(None, None);
        assert_eq!(hidden.namespace, "digimon");
        assert!(hidden.how.unwrap().contains("you may not list"));
        // Only other apps' instances: this app's namespace, saying where the others are.
        let others = d(None, Some(vec![at("b", Some("x")), at("a", Some("y"))]));
        assert_eq!(others.namespace, "digimon");
        assert!(others.how.unwrap().contains("there are in a, b"));
        // Two of this app's (a sidecar instance and a gateway's): say which.
        let e = decide(
            "kubectl-mesh",
            None,
            Some(vec![at("b", Some("digimon")), at("a", Some("digimon"))]),
            "digimon",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "kubectl-mesh instance kubectl-mesh is in several namespaces: a, b\n  fix: pass -n NAMESPACE"
        );
    }
}
