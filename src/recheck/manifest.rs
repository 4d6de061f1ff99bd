//! A tag's digest, read from its registry with a manifest `HEAD` (which Docker Hub does
//! not count as a pull), signing in as the registry asks: with a token from its token
//! service, or with `Basic` credentials, both from `config.json`.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use secrecy::ExposeSecret;

use crate::domain::ImageRef;
use crate::platform::engine::credentials::DockerConfig;

/// The manifest types a tag may name, as a pull accepts them.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Bound on each request to a registry.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads tags' digests from their registries.
#[derive(Debug, Clone)]
pub struct ManifestClient {
    http: reqwest::Client,
    /// The folder of `config.json` (`DOCKER_CONFIG`).
    config_folder: Option<PathBuf>,
}

impl ManifestClient {
    /// A client trusting the system's certificates, signing in with the credentials of
    /// `config.json` in `config_folder`.
    pub fn new(config_folder: Option<PathBuf>) -> Result<Self, String> {
        let tls = crate::system_tls()?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("autoredeploy/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Self {
            http,
            config_folder,
        })
    }

    /// The digest `image`'s tag names in its registry now. The error says why not, and
    /// never holds a credential.
    pub async fn digest(&self, image: &ImageRef) -> Result<String, String> {
        let tag = image.tag().ok_or("the image names no tag")?;
        let url = format!(
            "{}/v2/{}/manifests/{tag}",
            registry_base(image.registry()),
            image.repository()
        );
        let first = self.head(&url, None).await?;
        let answer = match first.status() {
            StatusCode::UNAUTHORIZED => {
                let challenge = first
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let authorization = self.sign_in(image, &challenge).await?;
                self.head(&url, Some(authorization)).await?
            }
            _ => first,
        };
        if !answer.status().is_success() {
            return Err(format!(
                "the registry answered {} to a HEAD of {url}",
                answer.status()
            ));
        }
        answer
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| crate::intake::sources::digest(Some(value)))
            .ok_or_else(|| format!("the registry gave no Docker-Content-Digest for {url}"))
    }

    async fn head(
        &self,
        url: &str,
        authorization: Option<String>,
    ) -> Result<reqwest::Response, String> {
        let mut request = self.http.head(url).header(ACCEPT, MANIFEST_TYPES);
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        request
            .send()
            .await
            .map_err(|error| format!("asking {url}: {}", error.without_url()))
    }

    /// The `Authorization` value the registry's `challenge` asks for.
    async fn sign_in(&self, image: &ImageRef, challenge: &str) -> Result<String, String> {
        let config =
            DockerConfig::load(self.config_folder.as_deref()).map_err(|error| error.to_string())?;
        let credentials = config
            .for_registry(image.registry())
            .and_then(|auth| auth.user_and_password())
            .map(|(user, password)| (user.to_owned(), password.expose_secret().to_owned()));
        let (scheme, parameters) = parse_challenge(challenge);
        match scheme.as_str() {
            "basic" => {
                let (user, password) = credentials.ok_or_else(|| {
                    format!(
                        "{} asks for credentials, and config.json has none for it",
                        image.registry()
                    )
                })?;
                let encoded = base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{user}:{password}"),
                );
                Ok(format!("Basic {encoded}"))
            }
            "bearer" => {
                let realm = parameter(&parameters, "realm")
                    .ok_or("the registry's token challenge names no realm")?;
                let scope = parameter(&parameters, "scope")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("repository:{}:pull", image.repository()));
                let mut url = url::Url::parse(realm)
                    .map_err(|_| "the registry's token realm is not a URL".to_owned())?;
                // Credentials go only over https, or to this machine's loopback interface.
                if url.scheme() != "https" && !is_loopback(url.host_str().unwrap_or_default()) {
                    return Err(format!(
                        "{} names a token service that is not https; no credentials are sent to it",
                        image.registry()
                    ));
                }
                url.query_pairs_mut().append_pair("scope", &scope);
                if let Some(service) = parameter(&parameters, "service") {
                    url.query_pairs_mut().append_pair("service", service);
                }
                let mut request = self.http.get(url);
                if let Some((user, password)) = credentials {
                    request = request.basic_auth(user, Some(password));
                }
                let answer = request.send().await.map_err(|error| {
                    format!("asking for a registry token: {}", error.without_url())
                })?;
                if !answer.status().is_success() {
                    return Err(format!(
                        "the token service of {} answered {}",
                        image.registry(),
                        answer.status()
                    ));
                }
                let document: serde_json::Value = answer.json().await.map_err(|error| {
                    format!("reading a registry token: {}", error.without_url())
                })?;
                let token = document["token"]
                    .as_str()
                    .or(document["access_token"].as_str())
                    .ok_or("the token service gave no token")?;
                Ok(format!("Bearer {token}"))
            }
            _ => Err(format!(
                "{} asks to sign in in a way autoredeploy does not know",
                image.registry()
            )),
        }
    }
}

/// Where a registry's API is: Docker Hub's under its own name; plain http for a registry
/// on the loopback interface (which Docker itself reaches over http), https otherwise.
fn registry_base(registry: &str) -> String {
    if registry == "docker.io" {
        return "https://registry-1.docker.io".into();
    }
    let host = registry.rsplit_once(':').map_or(registry, |(host, _)| host);
    match is_loopback(host) {
        true => format!("http://{registry}"),
        false => format!("https://{registry}"),
    }
}

/// Whether `host` (without its port) is this machine's loopback interface.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The scheme of a `WWW-Authenticate` challenge (lower case) and its parameters.
fn parse_challenge(challenge: &str) -> (String, Vec<(String, String)>) {
    let (scheme, rest) = challenge
        .trim()
        .split_once(' ')
        .unwrap_or((challenge.trim(), ""));
    let mut parameters = Vec::new();
    let mut rest = rest.trim();
    while let Some((name, after)) = rest.split_once('=') {
        let name = name
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((value, remainder)) => (value, remainder),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        parameters.push((name, value.to_owned()));
        rest = remainder.trim_start_matches(',').trim();
    }
    (scheme.to_ascii_lowercase(), parameters)
}

fn parameter<'a>(parameters: &'a [(String, String)], name: &str) -> Option<&'a str> {
    parameters
        .iter()
        .find(|(found, _)| found == name)
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_challenge_is_read_with_its_quoted_parameters() {
        let (scheme, parameters) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(scheme, "bearer");
        assert_eq!(
            parameter(&parameters, "realm"),
            Some("https://auth.docker.io/token")
        );
        assert_eq!(
            parameter(&parameters, "service"),
            Some("registry.docker.io")
        );
        assert_eq!(
            parameter(&parameters, "scope"),
            Some("repository:library/nginx:pull")
        );
        let (scheme, parameters) = parse_challenge(r#"Basic realm="test""#);
        assert_eq!(
            (scheme.as_str(), parameter(&parameters, "realm")),
            ("basic", Some("test"))
        );
    }

    #[test]
    fn docker_hub_and_loopback_registries_are_reached_where_docker_reaches_them() {
        assert_eq!(registry_base("docker.io"), "https://registry-1.docker.io");
        assert_eq!(registry_base("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(registry_base("localhost:5000"), "http://localhost:5000");
        assert_eq!(registry_base("ghcr.io"), "https://ghcr.io");
    }
}
