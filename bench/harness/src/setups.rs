//! The Envoys compared: native routes + CORS, the same + a no-op Wasm filter (the floor), the
//! mesh filter as `render` emits it, a Lua filter doing the same job, and a direct-response
//! listener (the ceiling); plus the shared upstream and the process that runs each of them.

use kubectl_mesh::envoy::{self, LocalEnvoy, StaticCluster};
use mesh_tests::client::Request;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Istio's cluster names for the digimon services (what the mesh config routes to).
pub const SERVER: &str = "outbound|6000||server.digimon.svc.cluster.local";
/// The web app's cluster.
pub const WEB: &str = "outbound|8060||web.digimon.svc.cluster.local";
/// The origin the digimon web app sends.
pub const ORIGIN: &str = "http://web.backend.com";

/// One configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Envoy's own route table and CORS filter.
    Native,
    /// Native + a no-op Rust proxy-wasm filter: what any Wasm filter pays.
    Floor,
    /// The mesh filter with the digimon config, as `render` emits it.
    Mesh,
    /// A Lua filter making the same routing decision and CORS answers.
    Lua,
    /// A listener answering every request itself: the harness's ceiling.
    Direct,
}

impl Setup {
    /// Every setup, in report order.
    pub const ALL: [Setup; 5] = [
        Setup::Native,
        Setup::Floor,
        Setup::Mesh,
        Setup::Lua,
        Setup::Direct,
    ];

    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Setup::Native => "native routes + CORS",
            Setup::Floor => "native + no-op Wasm (floor)",
            Setup::Mesh => "mesh filter",
            Setup::Lua => "Lua filter",
            Setup::Direct => "direct response (ceiling)",
        }
    }
}

/// Paths the setups need.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Envoy binary.
    pub envoy: PathBuf,
    /// `mesh_filter.wasm`.
    pub mesh_wasm: PathBuf,
    /// The no-op filter module.
    pub noop_wasm: PathBuf,
    /// The probe module (the mesh filter's host calls without its logic).
    pub probe_wasm: PathBuf,
    /// The mesh config (filter JSON) under test.
    pub mesh_json: String,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The digimon CORS policy in Envoy's terms (the gRPC-Web extras `grpcWeb` adds, by hand).
fn native_cors() -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"exact": ORIGIN}],
        "allow_methods": "POST,GET,OPTIONS,PUT,DELETE",
        "allow_headers": "keep-alive,user-agent,cache-control,content-type,content-transfer-encoding,custom-header-1,x-grpc-web,x-user-agent,grpc-timeout,x-accept-content-transfer-encoding,x-accept-response-streaming",
        "expose_headers": "custom-header-1,grpc-status,grpc-message",
        "max_age": "1728",
        "allow_credentials": true
    })
}

const NOT_FOUND_BODY: &str = r#"{"error":"not_found","message":"no route for this host and path"}"#;

fn not_found_route() -> Value {
    json!({"match": {"prefix": "/"}, "direct_response": {"status": 404, "body": {"inline_string": NOT_FOUND_BODY}}})
}

/// The digimon routing as a native route table: both hosts, CORS on api, 404 elsewhere. Its
/// routes retry as every route istiod makes does (as the filter's routing route does), so the
/// setups differ by the filter, not by a retry policy only one of them has.
fn native_routes() -> Value {
    let retry = envoy::istio_default_retry_policy();
    json!({"name": "native", "virtual_hosts": [
        {"name": "api", "domains": ["api.backend.com"], "typed_per_filter_config": {"envoy.filters.http.cors": native_cors()},
         "routes": [{"match": {"prefix": "/digimon.Digimon/"}, "route": {"cluster": SERVER, "timeout": "0s", "retry_policy": retry}}, not_found_route()]},
        {"name": "web", "domains": ["web.backend.com"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": WEB, "timeout": "0s", "retry_policy": retry}}]},
        {"name": "other", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 404}}]}
    ]})
}

fn cors_filter() -> Value {
    json!({"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}})
}

fn plain_grpc_web() -> Value {
    json!({"name": "envoy.filters.http.grpc_web", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"}})
}

/// The Lua version of the digimon job: the same decision the mesh filter makes (drop a client's
/// routing header, match host and prefix, answer preflights, 404 a listed host's other paths,
/// name the cluster in the routing header and mark gRPC-Web), and the CORS grant on responses.
pub const LUA_SCRIPT: &str = r#"
local hosts = {
  ["api.backend.com"] = { prefix = "/digimon.Digimon/", cluster = "outbound|6000||server.digimon.svc.cluster.local", cors = true, grpc_web = true },
  ["web.backend.com"] = { prefix = "/", cluster = "outbound|8060||web.digimon.svc.cluster.local" },
}
local allow_headers = "keep-alive,user-agent,cache-control,content-type,content-transfer-encoding,custom-header-1,x-grpc-web,x-user-agent,grpc-timeout,x-accept-content-transfer-encoding,x-accept-response-streaming"
local expose = "custom-header-1,grpc-status,grpc-message"
local not_found = '{"error":"not_found","message":"no route for this host and path"}'

function envoy_on_request(h)
  local headers = h:headers()
  headers:remove("x-mesh-upstream")
  headers:remove("x-mesh-grpc-web")
  local authority = string.lower(headers:get(":authority") or "")
  local host = hosts[string.gsub(authority, ":%d+$", "")]
  if host == nil then return end
  local path = headers:get(":path") or ""
  if string.sub(path, 1, #host.prefix) ~= host.prefix then
    h:respond({[":status"] = "404", ["content-type"] = "application/json"}, not_found)
    return
  end
  if host.cors then
    local origin = headers:get("origin")
    if origin == "http://web.backend.com" then
      local method = headers:get("access-control-request-method")
      if headers:get(":method") == "OPTIONS" and method ~= nil and method ~= "" then
        h:respond({[":status"] = "200", ["access-control-allow-origin"] = origin,
          ["access-control-allow-credentials"] = "true",
          ["access-control-allow-methods"] = "POST,GET,OPTIONS,PUT,DELETE",
          ["access-control-allow-headers"] = allow_headers,
          ["access-control-max-age"] = "1728", ["access-control-expose-headers"] = expose,
          ["vary"] = "Origin"}, "")
        return
      end
      h:streamInfo():dynamicMetadata():set("mesh.lua", "origin", origin)
    end
  end
  headers:replace("x-mesh-upstream", host.cluster)
  if host.grpc_web then headers:replace("x-mesh-grpc-web", "1") end
  h:clearRouteCache()
end

function envoy_on_response(h)
  local meta = h:streamInfo():dynamicMetadata():get("mesh.lua")
  if meta == nil then return end
  local headers = h:headers()
  headers:replace("access-control-allow-origin", meta["origin"])
  headers:replace("access-control-allow-credentials", "true")
  headers:replace("access-control-expose-headers", expose)
  headers:add("vary", "Origin")
end
"#;

fn lua_filter() -> Value {
    json!({"name": "envoy.filters.http.lua", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": LUA_SCRIPT}}})
}

/// The no-op filter through the same plugin builder as the mesh filter (same VM settings).
fn noop_filter(module: &Path) -> Value {
    envoy::http_filter(envoy::plugin_config_json(
        "",
        envoy::FailPolicy::Reload,
        envoy::local_code(&module.display().to_string()),
    ))
}

fn clusters(upstream: u16) -> Vec<StaticCluster> {
    [SERVER, WEB]
        .iter()
        .map(|name| StaticCluster {
            name: (*name).to_owned(),
            address: loopback(upstream),
            http2: true,
        })
        .collect()
}

fn strip_port() -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("strip_any_host_port".into(), json!(true));
    m
}

/// The Envoy of `setup`, forwarding to the upstream on `upstream`.
pub fn local_envoy(setup: Setup, inputs: &Inputs, upstream: u16) -> anyhow::Result<LocalEnvoy> {
    let native = |http_filters: Vec<Value>| LocalEnvoy {
        listen: loopback(0),
        admin: None,
        http_filters,
        route_config: native_routes(),
        clusters: clusters(upstream),
        hcm_extra: strip_port(),
    };
    Ok(match setup {
        Setup::Native => native(vec![cors_filter(), plain_grpc_web()]),
        Setup::Floor => native(vec![
            noop_filter(&inputs.noop_wasm),
            cors_filter(),
            plain_grpc_web(),
        ]),
        Setup::Mesh => mesh_envoy(inputs, &inputs.mesh_json, upstream)?,
        Setup::Lua => {
            let mut e = LocalEnvoy::mesh_with(
                vec![lua_filter(), envoy::grpc_web_filter()],
                loopback(0),
                clusters(upstream),
            );
            e.hcm_extra.extend(strip_port());
            e
        }
        // The buffer filter holds the answer until the request body is in: a reply sent while
        // the body is still arriving makes Envoy close the HTTP/1.1 connection, and the
        // ceiling would measure reconnects.
        Setup::Direct => LocalEnvoy {
            listen: loopback(0),
            admin: None,
            http_filters: vec![
                json!({"name": "envoy.filters.http.buffer", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                "max_request_bytes": 65536}}),
            ],
            route_config: json!({"name": "direct", "virtual_hosts": [{"name": "all", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]}),
            clusters: vec![],
            hcm_extra: serde_json::Map::new(),
        },
    })
}

/// The mesh filter with `config_json` exactly as `render` and `kubectl mesh run` build it.
pub fn mesh_envoy(inputs: &Inputs, config_json: &str, upstream: u16) -> anyhow::Result<LocalEnvoy> {
    let cfg = mesh_core::FilterConfig::from_json(config_json)?.mesh;
    let code = envoy::local_code(&inputs.mesh_wasm.display().to_string());
    let mut clusters = clusters(upstream);
    for c in mesh_core::compile(&cfg)?.clusters() {
        if !clusters.iter().any(|k| k.name == c) {
            clusters.push(StaticCluster {
                name: c.to_owned(),
                address: loopback(upstream),
                http2: true,
            });
        }
    }
    Ok(LocalEnvoy::mesh(&cfg, code, loopback(0), clusters))
}

/// The mesh filter's Envoy with the probe module in the filter's place: the same host calls for
/// the routed gRPC-Web call (the digimon cluster, the CORS grant the digimon config gives), no
/// logic. Envoy's work differs from the mesh setup's only by the filter's own code. `calls`:
/// the request's and the response's calls (`bench/probe-filter`), `("PUG", "ocev")` for all.
pub fn probe_envoy(inputs: &Inputs, upstream: u16, calls: (&str, &str)) -> LocalEnvoy {
    let config = format!(
        "{SERVER}\n{ORIGIN}\ncustom-header-1,grpc-status,grpc-message\n{}\n{}",
        calls.0, calls.1
    );
    let code = envoy::local_code(&inputs.probe_wasm.display().to_string());
    LocalEnvoy::mesh_with(
        vec![
            envoy::http_filter(envoy::plugin_config_json(
                &config,
                envoy::FailPolicy::Reload,
                code,
            )),
            envoy::grpc_web_filter(),
        ],
        loopback(0),
        clusters(upstream),
    )
}

/// The shared upstream: an Envoy answering every request itself over HTTP/1.1 or HTTP/2 with a
/// gRPC-shaped 200, so its cost is small and the same for every setup.
pub fn upstream_envoy() -> LocalEnvoy {
    LocalEnvoy {
        listen: loopback(0),
        admin: None,
        http_filters: vec![],
        route_config: json!({"name": "upstream", "virtual_hosts": [{"name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
                "response_headers_to_add": [{"header": {"key": "grpc-status", "value": "0"}}]}]}]}),
        clusters: vec![],
        hcm_extra: serde_json::Map::new(),
    }
}

/// A running Envoy; killed on drop.
pub struct Proc {
    child: Child,
    /// Listener port.
    pub port: u16,
    /// Admin port.
    pub admin_port: u16,
    /// From spawn to the first answer to `probe` with a status below 500.
    pub startup: Duration,
    dir: PathBuf,
}

/// How an Envoy of the bench is started.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Pin it to this CPU (`taskset -c`).
    pub cpu: Option<String>,
    /// Worker threads (`--concurrency`); 0 means one.
    pub workers: usize,
    /// A command Envoy runs under (valgrind), with its arguments.
    pub under: Vec<String>,
    /// How long it may take to serve (default 60 s).
    pub ready_within: Option<Duration>,
}

impl Launch {
    /// One worker, pinned to `cpu` when given.
    pub fn pinned(cpu: Option<&str>) -> Self {
        Launch {
            cpu: cpu.map(str::to_owned),
            ..Launch::default()
        }
    }
}

impl Proc {
    /// Starts Envoy with one worker (pinned to `cpu` when given) and waits until `probe` gets an
    /// answer below 500 through the listener: the filter is then configured and serving.
    pub fn start(
        envoy_bin: &Path,
        local: LocalEnvoy,
        cpu: Option<&str>,
        probe: &Request,
    ) -> anyhow::Result<Proc> {
        Proc::launch(envoy_bin, local, &Launch::pinned(cpu), probe)
    }

    /// [`Proc::start`] as `how` says.
    pub fn launch(
        envoy_bin: &Path,
        mut local: LocalEnvoy,
        how: &Launch,
        probe: &Request,
    ) -> anyhow::Result<Proc> {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mesh-bench-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir)?;
        let (port, admin_port) = (mesh_tests::free_port(), mesh_tests::free_port());
        local.listen = loopback(port);
        local.admin = Some(loopback(admin_port));
        let cfg = dir.join("envoy.json");
        std::fs::write(&cfg, serde_json::to_string(&local.bootstrap())?)?;
        let mut argv: Vec<String> = Vec::new();
        if let Some(c) = &how.cpu {
            argv.extend(["taskset".to_owned(), "-c".to_owned(), c.clone()]);
        }
        argv.extend(how.under.iter().cloned());
        let mut cmd = match argv.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(envoy_bin);
                c
            }
            None => Command::new(envoy_bin),
        };
        let started = Instant::now();
        let child = cmd
            .arg("-c")
            .arg(&cfg)
            .args([
                "--concurrency",
                &how.workers.max(1).to_string(),
                "--disable-hot-restart",
                "-l",
                "warning",
            ])
            .arg("--log-path")
            .arg(dir.join("envoy.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log"))?)
            .spawn()?;
        let mut p = Proc {
            child,
            port,
            admin_port,
            startup: Duration::ZERO,
            dir,
        };
        let within = how.ready_within.unwrap_or(Duration::from_secs(60));
        while started.elapsed() < within {
            if let Some(status) = p.child.try_wait()? {
                anyhow::bail!("Envoy exited with {status}; log:\n{}", p.log());
            }
            if let Ok(r) = probe.send(port) {
                if r.status < 500 {
                    p.startup = started.elapsed();
                    return Ok(p);
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        anyhow::bail!("Envoy not serving after {within:?}; log:\n{}", p.log())
    }

    /// A directory of this Envoy's own files (valgrind writes its counts there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Live heap and what the heap holds from the OS (MiB), from the admin `/memory`
    /// endpoint: `allocated` is what Envoy (and V8) use; the rest of RSS is mostly free memory
    /// the allocator keeps.
    pub fn heap_mib(&self) -> Option<(f64, f64)> {
        let r = Request::get("admin", "/memory")
            .send(self.admin_port)
            .ok()?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        let mib = |k: &str| {
            v.get(k)
                .and_then(|x| {
                    x.as_str()
                        .and_then(|s| s.parse::<f64>().ok())
                        .or(x.as_f64())
                })
                .map(|b| b / 1048576.0)
        };
        Some((mib("allocated")?, mib("heap_size")?))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (ns) all of Envoy's threads have run so far (`/proc/PID/task/*/schedstat`).
    pub fn cpu_ns(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Resident memory (KiB) now.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Envoy's log so far (and what it, or the tool it runs under, wrote to stderr).
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default();
        let stderr = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        match stderr.trim().is_empty() {
            true => log,
            false => format!("{log}\nstderr:\n{stderr}"),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
