//! `kubectl mesh import-envoy`: a standalone Envoy's static config (and optionally the Ingress in
//! front of it) becomes a MeshConfig, and everything it cannot express is listed with its path.
//!
//! Layout: `envoy` reads the bootstrap (listener, HTTP filters, clusters), `routes` the virtual
//! hosts and routes, `matches` route conditions and local answers, `cors` and `headers` their
//! CORS policies and header mutations, `strings`
//! Envoy's string matchers, `ingress` the Ingress rules, `notes` what was not carried.

mod cors;
mod defaults;
pub mod envoy;
mod headers;
pub mod ingress;
mod matches;
pub mod notes;
pub mod routes;
mod strings;

pub use envoy::ClusterTarget;
pub use notes::{Note, Scope};

use mesh_core::config::MeshConfig;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// Why an import failed. Messages name the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Serializing the imported config failed (a bug).
    #[error(transparent)]
    Serialize(#[from] crate::output::SerializeError),
    /// A file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML/JSON, or not what it should be.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The config has nothing MeshConfig can carry; `notes` says what was found and why it
    /// could not be carried (printed before the error).
    #[error("nothing to import: {message}{}", notes_hint(.notes))]
    Nothing {
        /// Why.
        message: String,
        /// What the import noted before it gave up.
        notes: Vec<Note>,
    },
    /// `--listener` names no listener of the file.
    #[error("--listener `{wanted}`: no such listener in static_resources.listeners; give its name, or listeners[N] / N for one without a name (the file has: {known})")]
    NoListener {
        /// The flag value.
        wanted: String,
        /// The listeners the file has.
        known: String,
    },
    /// The result does not validate (a combination the import does not handle yet).
    #[error(
        "the imported config does not validate: {0}; please report this with the Envoy config"
    )]
    Invalid(#[source] crate::render::RenderError),
    /// `--strict` and something was not carried.
    #[error("--strict: {0} thing(s) could not be carried over (the `not carried` lines above); nothing printed")]
    Strict(usize),
}

fn notes_hint(notes: &[Note]) -> String {
    let lost = notes.iter().filter(|n| !n.info).count();
    match lost {
        0 => String::new(),
        n => format!(" ({n} thing(s) not carried, listed above)"),
    }
}

impl ImportError {
    /// [`ImportError::Nothing`] with the notes taken so far.
    pub fn nothing(message: &str, notes: &notes::Notes) -> ImportError {
        ImportError::Nothing {
            message: message.to_owned(),
            notes: notes.list.clone(),
        }
    }

    /// The notes an error carries (those of a failed import).
    pub fn notes(&self) -> &[Note] {
        match self {
            ImportError::Nothing { notes, .. } => notes,
            _ => &[],
        }
    }
}

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The Envoy config file (`-` for stdin).
    pub envoy_file: PathBuf,
    /// The Ingress file whose rules name the hosts in front of the Envoy.
    pub ingress_file: Option<PathBuf>,
    /// The Envoy's Service name in the Ingress.
    pub envoy_service: String,
    /// The MeshConfig `namespace` (default: the Ingress's, else `default`).
    pub namespace: Option<String>,
    /// The listener to import (`--listener`: its name, `listeners[N]` or `N`).
    pub listener: Option<String>,
    /// Fail (print nothing) when anything is not carried.
    pub strict: bool,
    /// Print JSON instead of YAML.
    pub json: bool,
}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The MeshConfig (validated by the filter's own code).
    pub config: MeshConfig,
    /// Everything not carried, or carried with a change, in input order.
    pub notes: Vec<Note>,
    /// The imported listener (`static_resources.listeners[N]`).
    pub listener: usize,
    /// Where each Envoy cluster's traffic goes.
    pub clusters: BTreeMap<String, ClusterTarget>,
    /// The Ingress, when one was given.
    pub ingress: Option<ingress::Ingresses>,
    /// The original ignored a `:port` in host matching.
    pub ignore_port: bool,
    /// The original ignored a trailing dot in host matching.
    pub ignore_trailing_dot: bool,
    /// The original also rewrote the forwarded Host header (`strip_*_host_*`).
    pub strips_host_header: bool,
}

/// The inputs of one import.
#[derive(Debug, Clone, Copy, Default)]
pub struct Source<'a> {
    /// The Envoy file's name, for messages.
    pub envoy_file: &'a str,
    /// Its text.
    pub envoy_text: &'a str,
    /// The Ingress file's name and text.
    pub ingress: Option<(&'a str, &'a str)>,
    /// The Envoy's Service in the Ingress rules.
    pub envoy_service: &'a str,
    /// The MeshConfig namespace (default: the Ingress's, else `default`).
    pub namespace: Option<&'a str>,
    /// The listener to import (name, `listeners[N]` or `N`).
    pub listener: Option<&'a str>,
}

/// Imports `envoy_text` (from `envoy_file`, used in messages), with the Ingress text if given.
pub fn import(
    envoy_file: &str,
    envoy_text: &str,
    ingress_src: Option<(&str, &str)>,
    envoy_service: &str,
    namespace: Option<&str>,
) -> Result<Imported, ImportError> {
    import_source(&Source {
        envoy_file,
        envoy_text,
        ingress: ingress_src,
        envoy_service,
        namespace,
        listener: None,
    })
}

/// Imports one [`Source`].
pub fn import_source(src: &Source<'_>) -> Result<Imported, ImportError> {
    let Source {
        envoy_file,
        envoy_text,
        ingress: ingress_src,
        envoy_service,
        namespace,
        listener,
    } = *src;
    let value = envoy::parse(envoy_file, envoy_text)?;
    let root = notes::At::root(&value, "");
    let ing = match ingress_src {
        Some((file, text)) => Some(ingress::parse(file, text)?),
        None => None,
    };
    let mut notes = notes::Notes::default();
    envoy::note_top_level(&root, &mut notes);
    let port = ing
        .as_ref()
        .and_then(|i| ingress::envoy_port(i, envoy_service));
    let hcm = envoy::find_hcm(&root, port, listener, &mut notes)?;
    let used = routes::referenced_clusters(&hcm);
    let clusters = envoy::clusters(&root, &used, &mut notes);
    let ctx = routes::Ctx::new(&hcm, &clusters);
    let imported = routes::virtual_hosts(&ctx, &mut notes);
    let hosts = match &ing {
        None => imported.into_iter().map(|h| h.host).collect(),
        Some(i) => {
            if ingress::envoy_port(i, envoy_service).is_none()
                && !i
                    .rules
                    .iter()
                    .flat_map(|r| &r.paths)
                    .any(|p| p.backend.service == envoy_service)
            {
                return Err(ImportError::nothing(
                    &format!("no Ingress rule sends traffic to the Envoy's Service `{envoy_service}`; pass its name with --envoy-service"),
                    &notes,
                ));
            }
            let domains: Vec<(usize, Vec<String>)> = hcm
                .at
                .get("route_config")
                .get("virtual_hosts")
                .items()
                .into_iter()
                .map(|(v, vh)| {
                    let d = vh
                        .get("domains")
                        .items()
                        .into_iter()
                        .filter_map(|(_, d)| d.str().map(str::to_owned))
                        .collect();
                    (v, d)
                })
                .collect();
            ingress::assemble(i, envoy_service, &imported, &domains, &mut notes)
        }
    };
    if hosts.is_empty() {
        return Err(ImportError::nothing(
            "no virtual host could be carried",
            &notes,
        ));
    }
    let namespace = namespace
        .map(str::to_owned)
        .or_else(|| ing.as_ref().and_then(|i| i.namespace.clone()))
        .unwrap_or_else(|| "default".to_owned());
    // An Ingress controller (ingress-nginx) matches hosts without port or trailing dot; an
    // Envoy alone only with strip_any_host_port / ignore_port_in_host_matching /
    // strip_trailing_host_dot.
    let via_ingress = ing.is_some();
    let host_matching = mesh_core::config::HostMatching {
        ignore_port: hcm.ignore_port || via_ingress,
        ignore_trailing_dot: hcm.ignore_trailing_dot || via_ingress,
    };
    let config = MeshConfig {
        api_version: mesh_core::API_VERSION.to_owned(),
        kind: mesh_core::KIND.to_owned(),
        namespace,
        cluster_domain: "cluster.local".to_owned(),
        hosts,
        host_matching,
        not_found: None,
        not_found_hosts: Default::default(),
    };
    // The same validation `render` and the filter run.
    let text = to_yaml(&config)?;
    let config = crate::render::parse_config(envoy_file, &text).map_err(ImportError::Invalid)?;
    Ok(Imported {
        config,
        notes: notes.list,
        listener: hcm.listener,
        clusters,
        ignore_port: host_matching.ignore_port,
        ignore_trailing_dot: host_matching.ignore_trailing_dot,
        strips_host_header: hcm.strips_host_header,
        ingress: ing,
    })
}

/// The YAML form of a config.
pub fn to_yaml(config: &MeshConfig) -> Result<String, crate::output::SerializeError> {
    crate::output::yaml("the imported config", config)
}

fn read(path: &PathBuf) -> Result<(String, String), ImportError> {
    let file = path.display().to_string();
    let text = if file == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map(|_| s)
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|source| ImportError::Read {
        file: file.clone(),
        source,
    })?;
    Ok((file, text))
}

/// Prints notes on `err`, one line per field and reason (a host-level field can apply to
/// several routes).
pub fn print_notes(file: &str, notes: &[Note], err: &mut impl Write) {
    let mut shown = std::collections::BTreeSet::new();
    for n in notes {
        let line = format!("{file}: {n}");
        if shown.insert(line.clone()) {
            let _ = writeln!(err, "{line}");
        }
    }
}

/// Runs `kubectl mesh import-envoy`: prints the MeshConfig on `out` and the notes on `err`
/// (with `strict`, notes make it fail and nothing is printed).
pub fn run(opts: &Options, out: &mut impl Write, err: &mut impl Write) -> Result<(), ImportError> {
    let (file, text) = read(&opts.envoy_file)?;
    let ingress_src = match &opts.ingress_file {
        Some(p) => Some(read(p)?),
        None => None,
    };
    let imported = import_source(&Source {
        envoy_file: &file,
        envoy_text: &text,
        ingress: ingress_src.as_ref().map(|(f, t)| (f.as_str(), t.as_str())),
        envoy_service: &opts.envoy_service,
        namespace: opts.namespace.as_deref(),
        listener: opts.listener.as_deref(),
    });
    let imported = match imported {
        Ok(i) => i,
        Err(e) => {
            // The notes say why nothing could be carried: print them on this path too.
            print_notes(&file, e.notes(), err);
            return Err(e);
        }
    };
    print_notes(&file, &imported.notes, err);
    let lost = imported.notes.iter().filter(|n| !n.info).count();
    if opts.strict && lost > 0 {
        return Err(ImportError::Strict(lost));
    }
    let body = if opts.json {
        format!(
            "{:#}\n",
            crate::output::value("the imported config", &imported.config)?
        )
    } else {
        format!(
            "# kubectl mesh import-envoy -f {file}{}: {lost} thing(s) not carried, listed on stderr\n{}",
            opts.ingress_file
                .as_ref()
                .map(|p| format!(" --ingress {}", p.display()))
                .unwrap_or_default(),
            to_yaml(&imported.config)?
        )
    };
    let _ = write!(out, "{body}");
    let _ = writeln!(
        err,
        "imported {} host(s), {} route(s) from static_resources.listeners[{}]; {lost} thing(s) not carried, {} for information",
        imported.config.hosts.len(),
        imported.config.hosts.iter().map(|h| h.routes.len()).sum::<usize>(),
        imported.listener,
        imported.notes.len() - lost
    );
    Ok(())
}
