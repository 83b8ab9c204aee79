//! Registry credentials: `--username` with `--password-stdin`, or docker's config.json
//! (`auths`), and the two challenges registries answer 401 with: Basic, and Bearer (a token
//! fetched from the realm, the distribution token flow).

use super::OciError;
use base64::Engine;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

impl Credentials {
    /// The `Authorization` value for Basic auth.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// docker's config.json: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The credentials for `registry` in a docker config file; `Ok(None)` when the file or the
/// entry does not exist. Credential helpers (`credsStore`, `credHelpers`) are not run.
pub fn from_docker_config(path: &Path, registry: &str) -> Result<Option<Credentials>, OciError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(OciError::DockerConfig {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        }
    };
    let bad = |reason: String| OciError::DockerConfig {
        path: path.display().to_string(),
        reason,
    };
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let mut keys = vec![
        registry.to_owned(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if registry == super::DOCKER_HUB {
        keys.push("https://index.docker.io/v1/".to_owned());
    }
    let Some(entry) = keys.iter().find_map(|k| config["auths"].get(k)) else {
        return Ok(None);
    };
    if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .map_err(|e| bad(format!("auths.{registry}.auth is not base64: {e}")))?;
        let text = String::from_utf8_lossy(&decoded);
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| bad(format!("auths.{registry}.auth is not user:password")))?;
        return Ok(Some(Credentials {
            username: u.to_owned(),
            password: p.to_owned(),
        }));
    }
    match (entry["username"].as_str(), entry["password"].as_str()) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.to_owned(),
            password: p.to_owned(),
        })),
        _ => Ok(None),
    }
}

/// One `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lower case).
    pub scheme: String,
    /// Its parameters (`realm`, `service`, `scope`).
    pub params: BTreeMap<String, String>,
}

/// Parses `Scheme k="v", k2=v2`; quoted values may hold commas (a scope does).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_at(after.find(',').unwrap_or(after.len())),
        };
        params.insert(key.trim().to_ascii_lowercase(), value.to_owned());
        rest = next;
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// `application/x-www-form-urlencoded`-style escaping for a query value.
pub fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The bearer token in a token endpoint's answer (`token`, or OAuth2's `access_token`).
pub fn token_from(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["token"]
        .as_str()
        .or_else(|| v["access_token"].as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_commas_inside_quotes() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:mesh/filter:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example.com/token");
        assert_eq!(c.params["scope"], "repository:mesh/filter:pull,push");
        let b = parse_challenge(r#"Basic realm="basic-realm""#).unwrap();
        assert_eq!(
            (b.scheme.as_str(), b.params["realm"].as_str()),
            ("basic", "basic-realm")
        );
        assert_eq!(
            query_escape("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert_eq!(
            token_from(br#"{"access_token":"t1"}"#).as_deref(),
            Some("t1")
        );
        assert_eq!(
            token_from(br#"{"token":"t2","access_token":"x"}"#).as_deref(),
            Some("t2")
        );
        assert_eq!(token_from(b"{}"), None);
    }

    #[test]
    fn docker_config_entries_by_host_or_url() {
        let dir = std::env::temp_dir().join(format!("mesh-oci-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("u1:p:1");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"r.example.com":{{"auth":"{auth}"}},"https://q.example.com":{{"username":"u2","password":"p2"}},"https://index.docker.io/v1/":{{"auth":"{auth}"}}}},"credsStore":"desktop"}}"#
            ),
        )
        .unwrap();
        let c = from_docker_config(&path, "r.example.com").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u1", "p:1"));
        assert_eq!(c.basic(), format!("Basic {auth}"));
        let q = from_docker_config(&path, "q.example.com").unwrap().unwrap();
        assert_eq!(q.username, "u2");
        assert!(from_docker_config(&path, super::super::DOCKER_HUB)
            .unwrap()
            .is_some());
        assert!(from_docker_config(&path, "other.example.com")
            .unwrap()
            .is_none());
        assert!(from_docker_config(&dir.join("none.json"), "r.example.com")
            .unwrap()
            .is_none());
        std::fs::write(&path, "{").unwrap();
        let e = from_docker_config(&path, "r.example.com")
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.json") && e.contains("not JSON"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
