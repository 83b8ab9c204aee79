//! The filter module as an OCI image: its layout ([`artifact`]), references
//! (`oci://REGISTRY/REPO:TAG` or `@sha256:...`), and pushing it to a registry ([`registry`]).

pub mod artifact;
pub mod auth;
pub mod push;
pub mod registry;

pub use artifact::Artifact;

/// Why an OCI operation failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference cannot be parsed.
    #[error("`{url}` is not an OCI reference: {reason} (example: oci://registry.example.com/mesh/filter:v1)")]
    BadReference {
        /// What was given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The request did not get an answer.
    #[error("{what}: {source}\n  fix: check that the registry is reachable (plain HTTP is used for localhost and with --plain-http)")]
    Http {
        /// What was asked.
        what: String,
        /// The transport error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// Reading an answer failed.
    #[error("{what}: reading the answer: {source}")]
    Body {
        /// What was asked.
        what: String,
        /// The transport error.
        #[source]
        source: hyper::Error,
    },
    /// The registry answered with an error status.
    #[error("{what}: the registry answered {status}: {body}")]
    Status {
        /// What was asked.
        what: String,
        /// The HTTP status.
        status: http::StatusCode,
        /// The start of its body.
        body: String,
    },
    /// The registry wants credentials and none were found.
    #[error("{registry} asks for credentials ({challenge})\n  fix: `docker login {registry}` (kubectl mesh reads its config.json), or pass --username NAME --password-stdin")]
    NoCredentials {
        /// The registry host.
        registry: String,
        /// Its WWW-Authenticate header.
        challenge: String,
    },
    /// Credentials were refused or a token could not be had.
    #[error("{registry} refused the credentials: {reason}")]
    Refused {
        /// The registry host.
        registry: String,
        /// What it said.
        reason: String,
    },
    /// The docker config cannot be read.
    #[error("{path}: {reason}")]
    DockerConfig {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry stored something else than what was sent.
    #[error("the registry stored the manifest as {got}, but it is {want}; it may rewrite manifests, which would make istio-agent refuse the module")]
    DigestChanged {
        /// The digest of what was sent.
        want: String,
        /// Docker-Content-Digest of the answer.
        got: String,
    },
    /// A digest reference names another image than the module's.
    #[error("{url} names digest {given}, but the embedded module's image is {actual}; push by tag, or name that digest")]
    WrongDigest {
        /// The reference.
        url: String,
        /// The digest in it.
        given: String,
        /// The module image's digest.
        actual: String,
    },
    /// The TLS setup failed.
    #[error("TLS: cannot load the system's root certificates: {0}")]
    Tls(#[source] std::io::Error),
}

/// Docker Hub's registry host, for references without one (as istio-agent resolves them).
pub const DOCKER_HUB: &str = "index.docker.io";

/// A parsed `oci://REGISTRY/REPO[:TAG][@sha256:HEX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (and port).
    pub registry: String,
    /// Repository path.
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// `sha256:HEX` digest.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses an `oci://` URL the way istio-agent reads it (go-containerregistry's rules: a
    /// first component without `.` or `:` that is not `localhost` is a Docker Hub path).
    pub fn parse(url: &str) -> Result<Reference, OciError> {
        let bad = |reason: &str| OciError::BadReference {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("oci://")
            .ok_or_else(|| bad("it must start with oci://"))?;
        let (rest, digest) = match rest.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("a digest must be sha256:HEX"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("a sha256 digest has 64 hex digits"));
                }
                (r, Some(format!("sha256:{}", hex.to_ascii_lowercase())))
            }
            None => (rest, None),
        };
        // A tag follows the last `:` after the last `/` (a `:` before it is a port).
        let slash = rest.rfind('/').unwrap_or(0);
        let (path, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_owned())),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(bad("a tag is up to 128 letters, digits, `_`, `.` or `-`"));
            }
        }
        let (registry, repository) = match path.split_once('/') {
            Some((first, repo))
                if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
            {
                (first.to_owned(), repo.to_owned())
            }
            _ if path.contains('/') => (DOCKER_HUB.to_owned(), path.to_owned()),
            _ => (DOCKER_HUB.to_owned(), format!("library/{path}")),
        };
        let valid_repo = !repository.is_empty()
            && repository.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if registry.is_empty() || !valid_repo {
            return Err(bad(
                "the repository is lower-case letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What the manifest is pushed or fetched by: the digest if given, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// True for a registry on this machine, which is spoken to over plain HTTP (as docker does).
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => self.registry.split(':').next().unwrap_or_default(),
        };
        host == "localhost"
            || host == "::1"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(url: &str) -> Reference {
        Reference::parse(url).unwrap()
    }

    #[test]
    fn references_parse_as_istio_agent_reads_them() {
        let x = r("oci://127.0.0.1:5000/mesh/filter:v0.1.0");
        assert_eq!(x.registry, "127.0.0.1:5000");
        assert_eq!(x.repository, "mesh/filter");
        assert_eq!(x.tag.as_deref(), Some("v0.1.0"));
        assert!(x.is_loopback());
        assert_eq!(x.to_string(), "oci://127.0.0.1:5000/mesh/filter:v0.1.0");
        let d = format!("sha256:{}", "a".repeat(64));
        let y = r(&format!("oci://ghcr.io/org/filter@{d}"));
        assert_eq!((y.tag, y.digest.as_deref()), (None, Some(d.as_str())));
        assert!(!r("oci://ghcr.io/org/filter").is_loopback());
        assert_eq!(r("oci://ghcr.io/org/filter").tag.as_deref(), Some("latest"));
        let hub = r("oci://org/filter:1");
        assert_eq!(
            (hub.registry.as_str(), hub.repository.as_str()),
            (DOCKER_HUB, "org/filter")
        );
        assert_eq!(r("oci://filter").repository, "library/filter");
        assert!(r("oci://localhost/filter:1").is_loopback());
    }

    #[test]
    fn bad_references_say_why() {
        for (url, why) in [
            ("https://x/y", "oci://"),
            ("oci://x.io/Filter:1", "lower-case"),
            ("oci://x.io/f:", "tag"),
            ("oci://x.io/f@sha256:abc", "64 hex"),
            ("oci://x.io/f@md5:abc", "sha256:HEX"),
        ] {
            let e = Reference::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
