//! `kubectl mesh module push` and `module digest`: where the credentials come from, and what
//! is printed (the digest `--module-url oci://...` is checked against).

use super::auth::{self, Credentials};
use super::registry::Registry;
use super::{Artifact, OciError, Reference};
use std::io::{BufRead, Write};

/// What `module push` was asked.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// `oci://REGISTRY/REPO:TAG`.
    pub reference: String,
    /// `--username`.
    pub username: Option<String>,
    /// The password read from stdin (`--password-stdin`).
    pub password: Option<String>,
    /// `--plain-http`.
    pub plain_http: bool,
    /// `-o json`.
    pub json: bool,
}

/// The password on stdin: its first line, without the line end.
pub fn read_password(mut input: impl BufRead) -> Result<String, OciError> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| OciError::DockerConfig {
            path: "stdin".into(),
            reason: format!("cannot read the password: {e}"),
        })?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(OciError::DockerConfig {
            path: "stdin".into(),
            reason: "--password-stdin read an empty password".into(),
        });
    }
    Ok(password)
}

/// Pushes `module` and prints where and under which digest.
pub async fn push(opts: &PushOptions, module: &[u8], out: &mut impl Write) -> Result<(), OciError> {
    let reference = Reference::parse(&opts.reference)?;
    let credentials = match (&opts.username, &opts.password) {
        (Some(u), Some(p)) => Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }),
        _ => match auth::docker_config_path() {
            Some(path) => auth::from_docker_config(&path, &reference.registry)?,
            None => None,
        },
    };
    let artifact = Artifact::new(module);
    let mut registry = Registry::new(&reference, credentials, opts.plain_http)?;
    tracing::info!(
        "pushing {} ({} byte layer)",
        reference,
        artifact.layer.len()
    );
    let digest = registry.push(&reference, &artifact).await?;
    let pinned = Reference {
        tag: None,
        digest: Some(digest.clone()),
        ..reference.clone()
    };
    let module_sha = crate::module::sha256_hex(module);
    if opts.json {
        let v = serde_json::json!({
            "reference": reference.to_string(),
            "digest": digest,
            "pinned": pinned.to_string(),
            "module": { "sha256": module_sha, "size": module.len() },
        });
        let _ = writeln!(out, "{v:#}");
    } else {
        let _ = writeln!(
            out,
            "pushed {reference}\ndigest: {digest}\nmodule: sha256:{module_sha} ({} bytes, as plugin.wasm)\n\
             use: --module-url {reference} (this build implies the digest; another passes --module-sha256 {digest})\n\
             or pinned: --module-url {pinned}",
            module.len()
        );
    }
    Ok(())
}

/// `module digest`: the module's sha256 (for http(s) URLs) and its image's manifest digest
/// (for oci:// URLs).
pub fn print_digests(module: &[u8], json: bool, out: &mut impl Write) {
    let sha = crate::module::sha256_hex(module);
    let image = Artifact::new(module).digest();
    if json {
        let v = serde_json::json!({ "module": format!("sha256:{sha}"), "image": image, "size": module.len() });
        let _ = writeln!(out, "{v:#}");
    } else {
        let _ = writeln!(
            out,
            "module: sha256:{sha} ({} bytes; the --module-sha256 of an http(s) URL)\nimage:  {image} (the digest istio-agent checks for oci://)",
            module.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_the_first_line() {
        assert_eq!(read_password(&b"s3cret\r\nrest"[..]).unwrap(), "s3cret");
        assert!(read_password(&b"\n"[..]).is_err());
    }
}
