//! A focused Kubernetes API emulator on 127.0.0.1 for testing the real binary over HTTP.
//!
//! It enforces what kubectl-mesh relies on: discovery, 404 for an uninstalled group, 403 with a
//! Status message for configured resources, 409 on a stale resourceVersion, server-side apply
//! (create and update, with fieldManager), JSON merge and strategic merge patches, 422 for a
//! ConfigMap over 1 MiB and 500 for an object over etcd's 1.5 MiB request limit, list items
//! without apiVersion and kind for built-in kinds (each as the real API server answers), and
//! Deployments whose rollout the test advances. It is not a general API server: apply replaces
//! each top-level field it is given instead of tracking field ownership per manager.

#![allow(dead_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

mod limits;
mod merge;
mod objects;
mod pod_proxy;
mod state;

use merge::merge;
use objects::{create, selects, stale, store};
use pod_proxy::{pod_proxy, pod_proxy_target};
use state::Resource;
pub use state::State;

/// A running emulator.
pub struct Emulator {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Emulator {
    /// Starts on a random loopback port; Kubernetes 1.30 with Istio (both API groups).
    pub async fn start() -> Emulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            version: ("1".into(), "30".into()),
            istio: true,
            extensions: true,
            traffic_extensions: true,
            objects: BTreeMap::new(),
            forbidden: Vec::new(),
            drop_connection: Vec::new(),
            drop_reads: Vec::new(),
            drop_response: Vec::new(),
            log: Vec::new(),
            managers: BTreeMap::new(),
            pod_proxies: BTreeMap::new(),
            rv: 100,
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Emulator { url, state }
    }

    /// Locks the state for reading or changing it.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kubeconfig pointing at this emulator, written to `dir`.
    pub fn kubeconfig(&self, dir: &std::path::Path, namespace: &str) -> std::path::PathBuf {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emu\n  cluster:\n    server: {}\nusers:\n- name: dev\n  user:\n    token: dev-token\ncontexts:\n- name: emu\n  context:\n    cluster: emu\n    user: dev\n    namespace: {namespace}\ncurrent-context: emu\n",
            self.url
        );
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).unwrap();
        path
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(code: u16, body: &Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn status(code: u16, reason: &str, message: String) -> Reply {
    reply(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        }),
    )
}

/// The emulator closes the connection when the handler returns this.
#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}
impl std::error::Error for Dropped {}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Result<Reply, Dropped> {
    let method = req.method().clone();
    let path = req.uri().path().trim_matches('/').to_owned();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), decode(v)))
        .collect();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(target) = pod_proxy_target(&path) {
        let raw_query = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        return Ok(pod_proxy(&state, &method, &path, target, &raw_query).await);
    }
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    st.log.push(format!("{method} /{path}"));
    let answer = route(&mut st, &method, &path, &query, &content_type, &body);
    let lose_answer = method != Method::GET
        && st.drop_response.iter().any(|(p, n)| {
            let parts: Vec<&str> = path.split('/').collect();
            parts.iter().any(|x| x == p) && (n == "*" || parts.last() == Some(&n.as_str()))
        });
    if lose_answer {
        return Err(Dropped);
    }
    answer
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn route(
    st: &mut State,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    content_type: &str,
    body: &[u8],
) -> Result<Reply, Dropped> {
    let parts: Vec<&str> = path.split('/').collect();
    let resources = st.resources();
    match parts.as_slice() {
        ["version"] => {
            let (major, minor) = st.version.clone();
            return Ok(reply(
                200,
                &json!({
                    "major": major, "minor": minor,
                    "gitVersion": format!("v{major}.{}.0", minor.trim_end_matches('+')),
                    "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64",
                }),
            ));
        }
        ["api"] => {
            return Ok(reply(
                200,
                &json!({
                    "kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1" }],
                }),
            ));
        }
        ["apis"] => {
            let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for r in &resources {
                if let Some(gv) = r.prefix.strip_prefix("apis/") {
                    if let Some((g, v)) = gv.split_once('/') {
                        let versions = groups.entry(g.into()).or_default();
                        if !versions.contains(&v.to_owned()) {
                            versions.push(v.into());
                        }
                    }
                }
            }
            let groups: Vec<Value> = groups
                .iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({ "groupVersion": format!("{g}/{v}"), "version": v }))
                        .collect();
                    json!({ "name": g, "versions": versions, "preferredVersion": versions[0] })
                })
                .collect();
            return Ok(reply(
                200,
                &json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }),
            ));
        }
        _ => {}
    }
    // What the user may do: everything but the writes `forbidden` lists, as RBAC would answer.
    if parts.as_slice()
        == [
            "apis",
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
        ]
        && *method == Method::POST
    {
        let review: Value = serde_json::from_slice(body).unwrap_or_default();
        let a = &review["spec"]["resourceAttributes"];
        let resource = match a["subresource"].as_str() {
            Some(sub) if !sub.is_empty() => {
                format!("{}/{sub}", a["resource"].as_str().unwrap_or_default())
            }
            _ => a["resource"].as_str().unwrap_or_default().to_owned(),
        };
        let name = a["name"].as_str().unwrap_or_default();
        let read = matches!(a["verb"].as_str(), Some("get" | "list" | "watch"));
        let denied = !read
            && st
                .forbidden
                .iter()
                .any(|(p, n)| *p == resource && (n == "*" || n == name));
        let mut answer = review.clone();
        answer["status"] = json!({ "allowed": !denied });
        return Ok(reply(201, &answer));
    }
    // Split into group-version prefix and the rest.
    let (prefix, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("api/v1".to_owned(), rest),
        ["apis", g, v, rest @ ..] => (format!("apis/{g}/{v}"), rest),
        _ => {
            return Ok(status(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            ))
        }
    };
    let served: Vec<&Resource> = resources.iter().filter(|r| r.prefix == prefix).collect();
    if served.is_empty() {
        return Ok(status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        ));
    }
    if rest.is_empty() {
        let list: Vec<Value> = served
            .iter()
            .map(|r| json!({
                "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced, "kind": r.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }))
            .collect();
        let gv = prefix
            .trim_start_matches("apis/")
            .trim_start_matches("api/");
        return Ok(reply(
            200,
            &json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list }),
        ));
    }
    let (ns, plural, name) = match rest {
        ["namespaces", ns, plural] => (ns.to_string(), plural.to_string(), None),
        ["namespaces", ns, plural, name] => {
            (ns.to_string(), plural.to_string(), Some(name.to_string()))
        }
        [plural] => (String::new(), plural.to_string(), None),
        [plural, name] => (String::new(), plural.to_string(), Some(name.to_string())),
        _ => return Ok(status(404, "NotFound", format!("unknown path {path}"))),
    };
    let Some(res) = served
        .iter()
        .find(|r| r.plural == plural)
        .map(|r| (*r).clone())
    else {
        return Ok(status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({plural})"),
        ));
    };
    let group = prefix
        .strip_prefix("apis/")
        .and_then(|gv| gv.split_once('/'))
        .map(|(g, _)| g)
        .unwrap_or("");
    if *method == Method::GET && st.drop_reads.contains(&plural) {
        return Err(Dropped);
    }
    if *method != Method::GET {
        let target = name.clone().unwrap_or_default();
        let matches = |list: &[(String, String)]| {
            list.iter()
                .any(|(p, n)| *p == plural && (n == "*" || *n == target))
        };
        if matches(&st.drop_connection) {
            return Err(Dropped);
        }
        if matches(&st.forbidden) {
            let verb = method.as_str().to_lowercase();
            return Ok(status(403, "Forbidden", format!(
                "{plural}.{group} \"{target}\" is forbidden: User \"dev\" cannot {verb} resource \"{plural}\" in API group \"{group}\" in the namespace \"{ns}\""
            )));
        }
    }
    if res.namespaced
        && !ns.is_empty()
        && *method != Method::GET
        && st.get("api/v1", "namespaces", "", &ns).is_none()
    {
        return Ok(status(
            404,
            "NotFound",
            format!("namespaces \"{ns}\" not found"),
        ));
    }
    let key = (prefix.clone(), plural.clone());
    let api_version = prefix
        .trim_start_matches("apis/")
        .trim_start_matches("api/")
        .to_owned();
    let parse_body = || -> Option<Value> {
        serde_yaml_ng::from_slice::<Value>(body)
            .ok()
            .filter(Value::is_object)
    };
    match (method.clone(), name) {
        (Method::GET, None) => {
            let selector = query.get("labelSelector").cloned().unwrap_or_default();
            let items: Vec<Value> = st
                .objects
                .get(&key)
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| ns.is_empty() || k.starts_with(&format!("{ns}/")))
                        .map(|(_, v)| v.clone())
                        .filter(|o| selects(&selector, &o["metadata"]["labels"]))
                        .map(|mut o| {
                            // Like the API server: no apiVersion or kind on the items of a
                            // built-in kind's list (custom resources keep theirs).
                            if !prefix.contains(".istio.io") {
                                if let Some(m) = o.as_object_mut() {
                                    m.remove("apiVersion");
                                    m.remove("kind");
                                }
                            }
                            o
                        })
                        .collect()
                })
                .unwrap_or_default();
            let rv = st.rv.to_string();
            Ok(reply(
                200,
                &json!({
                    "apiVersion": api_version, "kind": format!("{}List", res.kind),
                    "metadata": { "resourceVersion": rv }, "items": items,
                }),
            ))
        }
        (Method::GET, Some(name)) => match st.get(&prefix, &plural, &ns, &name) {
            Some(o) => Ok(reply(200, &o)),
            None => Ok(status(
                404,
                "NotFound",
                format!("{plural}.{group} \"{name}\" not found"),
            )),
        },
        (Method::POST, None) => {
            let Some(mut obj) = parse_body() else {
                return Ok(status(400, "BadRequest", "body is not an object".into()));
            };
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if st.get(&prefix, &plural, &ns, &name).is_some() {
                return Ok(status(
                    409,
                    "AlreadyExists",
                    format!("{plural}.{group} \"{name}\" already exists"),
                ));
            }
            if !ns.is_empty() {
                obj["metadata"]["namespace"] = json!(ns);
            }
            Ok(create(st, key, &ns, &name, obj))
        }
        (Method::PUT, Some(name)) => {
            let Some(obj) = parse_body() else {
                return Ok(status(400, "BadRequest", "body is not an object".into()));
            };
            let Some(live) = st.get(&prefix, &plural, &ns, &name) else {
                return Ok(status(
                    404,
                    "NotFound",
                    format!("{plural}.{group} \"{name}\" not found"),
                ));
            };
            if let Some(reply) = stale(&obj, &live, &plural, group, &name) {
                return Ok(reply);
            }
            Ok(store(st, key, &ns, &name, live, obj))
        }
        (Method::PATCH, Some(name)) => {
            let Some(patch) = parse_body() else {
                return Ok(status(400, "BadRequest", "body is not an object".into()));
            };
            let live = st.get(&prefix, &plural, &ns, &name);
            if let Some(reply) = live
                .as_ref()
                .and_then(|l| stale(&patch, l, &plural, group, &name))
            {
                return Ok(reply);
            }
            if content_type.starts_with("application/apply-patch") {
                let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
                    return Ok(status(
                        422,
                        "Invalid",
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
                    ));
                };
                if patch["apiVersion"] != json!(api_version)
                    || patch["kind"] != json!(res.kind)
                    || patch["metadata"]["name"] != json!(name)
                {
                    return Ok(status(
                        400,
                        "BadRequest",
                        "apply body must name the same apiVersion, kind and name as the URL".into(),
                    ));
                }
                st.managers
                    .insert(format!("{plural}/{ns}/{name}"), manager.clone());
                return Ok(match live {
                    None => {
                        let mut obj = patch;
                        if !ns.is_empty() {
                            obj["metadata"]["namespace"] = json!(ns);
                        }
                        obj["metadata"]["managedFields"] =
                            json!([{ "manager": manager, "operation": "Apply" }]);
                        create(st, key, &ns, &name, obj)
                    }
                    Some(live) => {
                        let mut next = live.clone();
                        for (k, v) in patch.as_object().into_iter().flatten() {
                            if k == "metadata" {
                                merge(&mut next["metadata"], v, false);
                            } else {
                                next[k] = v.clone();
                            }
                        }
                        next["metadata"]["managedFields"] =
                            json!([{ "manager": manager, "operation": "Apply" }]);
                        store(st, key, &ns, &name, live, next)
                    }
                });
            }
            let Some(live) = live else {
                return Ok(status(
                    404,
                    "NotFound",
                    format!("{plural}.{group} \"{name}\" not found"),
                ));
            };
            let strategic = match content_type {
                "application/merge-patch+json" => false,
                "application/strategic-merge-patch+json" => true,
                other => {
                    return Ok(status(
                        415,
                        "UnsupportedMediaType",
                        format!("unsupported patch type {other}"),
                    ))
                }
            };
            let mut next = live.clone();
            merge(&mut next, &patch, strategic);
            Ok(store(st, key, &ns, &name, live, next))
        }
        (Method::DELETE, Some(name)) => {
            let removed = st
                .objects
                .get_mut(&key)
                .and_then(|m| m.remove(&format!("{ns}/{name}")));
            match removed {
                Some(_) => Ok(reply(
                    200,
                    &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200 }),
                )),
                None => Ok(status(
                    404,
                    "NotFound",
                    format!("{plural}.{group} \"{name}\" not found"),
                )),
            }
        }
        _ => Ok(status(
            405,
            "MethodNotAllowed",
            format!("{method} not allowed on {path}"),
        )),
    }
}
