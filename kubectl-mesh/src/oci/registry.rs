//! Pushing the module image with the distribution API (blob upload, then the manifest by
//! tag), over hyper and rustls as the Kubernetes client already does; anonymous, Basic or
//! Bearer-token auth, answered when the registry challenges (401).

use super::auth::{self, Credentials};
use super::{Artifact, OciError, Reference};
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A registry session: one host, the credentials, and the Authorization that worked last.
pub struct Registry {
    client: Client<Https, Full<Bytes>>,
    base: String,
    host: String,
    credentials: Option<Credentials>,
    authorization: Option<String>,
}

/// An answer with its body read.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn error(&self, what: &str) -> OciError {
        let text = String::from_utf8_lossy(&self.body);
        OciError::Status {
            what: what.to_owned(),
            status: self.status,
            body: text.chars().take(400).collect::<String>().trim().to_owned(),
        }
    }
}

impl Registry {
    /// A session with `reference`'s registry: plain HTTP when `plain_http` (or the registry is
    /// on loopback), else HTTPS with the system's root certificates.
    pub fn new(
        reference: &Reference,
        credentials: Option<Credentials>,
        plain_http: bool,
    ) -> Result<Registry, OciError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(OciError::Tls)?
            .https_or_http()
            .enable_http1()
            .build();
        let scheme = if plain_http || reference.is_loopback() {
            "http"
        } else {
            "https"
        };
        Ok(Registry {
            client: Client::builder(TokioExecutor::new()).build(https),
            base: format!("{scheme}://{}", reference.registry),
            host: reference.registry.clone(),
            credentials,
            authorization: None,
        })
    }

    async fn once(
        &self,
        method: &Method,
        url: &str,
        headers: &[(header::HeaderName, &str)],
        body: &Bytes,
        authorization: Option<&str>,
        what: &str,
    ) -> Result<Answer, OciError> {
        let mut req = Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            req = req.header(k, *v);
        }
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(body.clone()))
            .map_err(|e| OciError::BadReference {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|source| OciError::Http {
                what: what.to_owned(),
                source,
            })?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|source| OciError::Body {
                what: what.to_owned(),
                source,
            })?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends a request; on a 401 answers the challenge once and sends it again.
    async fn send(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, &str)],
        body: Bytes,
        what: &str,
    ) -> Result<Answer, OciError> {
        let first = self
            .once(
                &method,
                url,
                headers,
                &body,
                self.authorization.as_deref(),
                what,
            )
            .await?;
        if first.status != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        let challenge = first
            .header(header::WWW_AUTHENTICATE)
            .unwrap_or_default()
            .to_owned();
        self.authorization = Some(self.answer(&challenge).await?);
        let again = self
            .once(
                &method,
                url,
                headers,
                &body,
                self.authorization.as_deref(),
                what,
            )
            .await?;
        if again.status == StatusCode::UNAUTHORIZED || again.status == StatusCode::FORBIDDEN {
            return Err(OciError::Refused {
                registry: self.host.clone(),
                reason: again.error(what).to_string(),
            });
        }
        Ok(again)
    }

    /// The Authorization value answering a challenge: Basic with the credentials, or a Bearer
    /// token from the realm (with the credentials if any: anonymous tokens exist).
    async fn answer(&self, challenge: &str) -> Result<String, OciError> {
        let no_credentials = || OciError::NoCredentials {
            registry: self.host.clone(),
            challenge: challenge.to_owned(),
        };
        let parsed = auth::parse_challenge(challenge).ok_or_else(no_credentials)?;
        match parsed.scheme.as_str() {
            "basic" => Ok(self
                .credentials
                .as_ref()
                .ok_or_else(no_credentials)?
                .basic()),
            "bearer" => {
                let realm = parsed.params.get("realm").ok_or_else(no_credentials)?;
                let query: Vec<String> = ["service", "scope"]
                    .iter()
                    .filter_map(|k| {
                        parsed
                            .params
                            .get(*k)
                            .map(|v| format!("{k}={}", auth::query_escape(v)))
                    })
                    .collect();
                let sep = if realm.contains('?') { '&' } else { '?' };
                let url = format!("{realm}{sep}{}", query.join("&"));
                let basic = self.credentials.as_ref().map(Credentials::basic);
                let what = format!("token from {realm}");
                let answer = self
                    .once(
                        &Method::GET,
                        &url,
                        &[],
                        &Bytes::new(),
                        basic.as_deref(),
                        &what,
                    )
                    .await?;
                if answer.status == StatusCode::UNAUTHORIZED && self.credentials.is_none() {
                    return Err(no_credentials());
                }
                if !answer.status.is_success() {
                    return Err(OciError::Refused {
                        registry: self.host.clone(),
                        reason: answer.error(&what).to_string(),
                    });
                }
                let token = auth::token_from(&answer.body).ok_or_else(|| OciError::Refused {
                    registry: self.host.clone(),
                    reason: format!("{what}: no token in the answer"),
                })?;
                Ok(format!("Bearer {token}"))
            }
            _ => Err(no_credentials()),
        }
    }

    /// Uploads one blob unless the registry has it: POST an upload, PUT the bytes with the
    /// digest (a monolithic upload, which every distribution registry takes).
    async fn push_blob(&mut self, repo: &str, blob: &[u8]) -> Result<(), OciError> {
        let digest = super::artifact::digest(blob);
        let what = format!("blob {digest}");
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let head = self
            .send(Method::HEAD, &url, &[], Bytes::new(), &what)
            .await?;
        if head.status == StatusCode::OK {
            return Ok(());
        }
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let started = self
            .send(Method::POST, &url, &[], Bytes::new(), &what)
            .await?;
        if started.status != StatusCode::ACCEPTED {
            return Err(started.error(&format!("{what}: starting the upload")));
        }
        let location = started
            .header(header::LOCATION)
            .ok_or_else(|| started.error(&format!("{what}: no Location for the upload")))?;
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_owned()
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", auth::query_escape(&digest));
        let len = blob.len().to_string();
        let put = self
            .send(
                Method::PUT,
                &url,
                &[
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (header::CONTENT_LENGTH, &len),
                ],
                Bytes::copy_from_slice(blob),
                &what,
            )
            .await?;
        if put.status != StatusCode::CREATED {
            return Err(put.error(&format!("{what}: uploading")));
        }
        Ok(())
    }

    /// Pushes the artifact's blobs and its manifest under `reference`'s tag (or digest), and
    /// checks that the registry stored the manifest under the same digest.
    pub async fn push(
        &mut self,
        reference: &Reference,
        artifact: &Artifact,
    ) -> Result<String, OciError> {
        let repo = &reference.repository;
        let digest = artifact.digest();
        if let Some(given) = &reference.digest {
            if *given != digest {
                return Err(OciError::WrongDigest {
                    url: reference.to_string(),
                    given: given.clone(),
                    actual: digest,
                });
            }
        }
        self.push_blob(repo, &artifact.config).await?;
        self.push_blob(repo, &artifact.layer).await?;
        let url = format!(
            "{}/v2/{repo}/manifests/{}",
            self.base,
            reference.manifest_ref()
        );
        let what = format!("manifest {reference}");
        let put = self
            .send(
                Method::PUT,
                &url,
                &[(header::CONTENT_TYPE, super::artifact::MANIFEST_TYPE)],
                Bytes::copy_from_slice(&artifact.manifest),
                &what,
            )
            .await?;
        if put.status != StatusCode::CREATED {
            return Err(put.error(&what));
        }
        match put.header(header::HeaderName::from_static("docker-content-digest")) {
            Some(got) if got != digest => Err(OciError::DigestChanged {
                want: digest,
                got: got.to_owned(),
            }),
            _ => Ok(digest),
        }
    }
}
