//! Registry credentials from a Docker `config.json`, as the Engine API wants them in
//! `X-Registry-Auth`.
//!
//! Only the file store (`auths`) is read. A key of `auths` is a bare host (`ghcr.io`,
//! `127.0.0.1:5000`) or a URL (`https://index.docker.io/v1/`); it names the registry of its
//! host. Credential helpers (`credsStore`, `credHelpers`) are programs outside this process:
//! a registry they are configured for is reported, so that a pull without credentials does
//! not come as a surprise.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The key Docker's own tools use for Docker Hub.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The hosts that mean Docker Hub in `auths`.
const DOCKER_HUB_HOSTS: [&str; 3] = ["index.docker.io", "docker.io", "registry-1.docker.io"];

/// The `X-Registry-Auth` value for `registry` from the `config.json` in `folder` (see
/// [`DockerConfig::load`]), or `None` to go without credentials; what stands in the way is
/// logged, never the credentials.
pub fn registry_auth(folder: Option<&Path>, registry: &str) -> Option<SecretString> {
    let config = match DockerConfig::load(folder) {
        Ok(config) => config,
        Err(error) => {
            tracing::warn!(%error, "going to the registry without credentials");
            return None;
        }
    };
    let auth = config
        .for_registry(registry)
        .map(RegistryAuth::header_value);
    if auth.is_none() && config.has_helper_for(registry) {
        tracing::warn!(
            registry,
            "config.json names a credential helper for this registry, which autoredeploy \
             does not run; going to it without credentials"
        );
    }
    auth
}

/// Why a `config.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file is not a Docker configuration.
    #[error("{path} is not a Docker config.json: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never a credential).
        reason: String,
    },
}

/// The registries a `config.json` holds credentials for.
#[derive(Debug, Default)]
pub struct DockerConfig {
    /// Each `auths` entry, by the host its key names.
    auths: Vec<(String, RegistryAuth)>,
    /// The hosts some credential helper is configured for (every host, with `credsStore`).
    helpers: Helpers,
}

#[derive(Debug, Default)]
enum Helpers {
    #[default]
    None,
    /// `credsStore`: every registry.
    All,
    /// `credHelpers`: these hosts.
    Hosts(Vec<String>),
}

/// The credentials of one registry.
#[derive(Debug, Clone)]
pub struct RegistryAuth {
    /// The key they were found under, sent as `serveraddress`.
    server_address: String,
    username: Option<String>,
    password: Option<SecretString>,
    identity_token: Option<SecretString>,
}

/// One entry of `auths`, as written by `docker login`.
#[derive(Deserialize)]
struct AuthEntry {
    /// `base64(user:password)`.
    #[serde(default)]
    auth: Option<SecretString>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<SecretString>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<SecretString>,
}

/// The parts of `config.json` read here; everything else in it is left alone.
#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

impl DockerConfig {
    /// The `config.json` in `folder` (`DOCKER_CONFIG`), or in `~/.docker` when `folder` is
    /// `None`; an empty configuration when there is no such file.
    pub fn load(folder: Option<&Path>) -> Result<Self, CredentialsError> {
        let folder = match folder {
            Some(folder) => folder.to_owned(),
            None => match std::env::var_os("HOME") {
                Some(home) => Path::new(&home).join(".docker"),
                None => return Ok(Self::default()),
            },
        };
        let path = folder.join("config.json");
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&bytes).map_err(|reason| CredentialsError::Invalid {
                path: path.clone(),
                reason,
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(CredentialsError::Unreadable {
                path,
                reason: error.to_string(),
            }),
        }
    }

    /// Reads a `config.json` document. The error never quotes the document.
    pub fn parse(document: &[u8]) -> Result<Self, String> {
        let file: ConfigFile = serde_json::from_slice(document).map_err(|error| {
            // Only where: serde_json's own message may quote a value, which may be a secret.
            let what = match error.classify() {
                serde_json::error::Category::Data => "a value of the wrong type",
                serde_json::error::Category::Eof => "the document ends early",
                _ => "invalid JSON",
            };
            format!(
                "not the JSON of a Docker config ({what} at line {}, column {})",
                error.line(),
                error.column()
            )
        })?;
        let mut auths = Vec::with_capacity(file.auths.len());
        for (key, entry) in file.auths {
            let auth = RegistryAuth::from_entry(&key, entry)?;
            auths.push((host_of(&key).to_ascii_lowercase(), auth));
        }
        let helpers = if file
            .creds_store
            .as_deref()
            .is_some_and(|name| !name.is_empty())
        {
            Helpers::All
        } else if file.cred_helpers.is_empty() {
            Helpers::None
        } else {
            Helpers::Hosts(
                file.cred_helpers
                    .into_keys()
                    .map(|key| host_of(&key).to_ascii_lowercase())
                    .collect(),
            )
        };
        Ok(Self { auths, helpers })
    }

    /// The credentials for `registry` (an image reference's registry, such as `docker.io`
    /// or `127.0.0.1:5000`), if the file holds some.
    pub fn for_registry(&self, registry: &str) -> Option<&RegistryAuth> {
        let registry = registry.to_ascii_lowercase();
        // Docker's own key for Hub first, then any other key naming the host.
        self.auths
            .iter()
            .find(|(host, auth)| {
                names_registry(host, &registry) && auth.server_address == DOCKER_HUB_KEY
            })
            .or_else(|| {
                self.auths
                    .iter()
                    .find(|(host, _)| names_registry(host, &registry))
            })
            .map(|(_, auth)| auth)
    }

    /// Whether a credential helper is configured for `registry`: its credentials, if any,
    /// are out of reach.
    pub fn has_helper_for(&self, registry: &str) -> bool {
        let registry = registry.to_ascii_lowercase();
        match &self.helpers {
            Helpers::None => false,
            Helpers::All => true,
            Helpers::Hosts(hosts) => hosts.iter().any(|host| names_registry(host, &registry)),
        }
    }
}

impl RegistryAuth {
    fn from_entry(key: &str, entry: AuthEntry) -> Result<Self, String> {
        let (mut username, mut password) = (entry.username, entry.password);
        if let Some(auth) = entry.auth.filter(|auth| !auth.expose_secret().is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.expose_secret().trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| format!("the `auth` of {key} is not base64 of user:password"))?;
            let (user, secret) = decoded.split_once(':').ok_or_else(|| {
                format!("the `auth` of {key} holds no `:` between user and password")
            })?;
            username = Some(user.to_owned());
            password = Some(SecretString::from(secret.to_owned()));
        }
        Ok(Self {
            server_address: key.to_owned(),
            username,
            password,
            identity_token: entry
                .identity_token
                .filter(|token| !token.expose_secret().is_empty()),
        })
    }

    /// The value of `X-Registry-Auth`: the JSON of these credentials in URL-safe base64,
    /// which is what the Engine decodes. A secret: never to be logged.
    pub fn header_value(&self) -> SecretString {
        let document = match &self.identity_token {
            Some(token) => serde_json::json!({
                "identitytoken": token.expose_secret(),
                "serveraddress": self.server_address,
            }),
            None => serde_json::json!({
                "username": self.username.as_deref().unwrap_or_default(),
                "password": self.password.as_ref().map(ExposeSecret::expose_secret).unwrap_or_default(),
                "serveraddress": self.server_address,
            }),
        };
        SecretString::from(
            base64::engine::general_purpose::URL_SAFE.encode(document.to_string().as_bytes()),
        )
    }

    /// The user name and password, for a registry's own `Basic` challenge or its token
    /// service; `None` with an identity token only. Secrets: never to be logged.
    pub fn user_and_password(&self) -> Option<(&str, &SecretString)> {
        Some((self.username.as_deref()?, self.password.as_ref()?))
    }

    /// The key of `auths` these credentials were found under.
    pub fn server_address(&self) -> &str {
        &self.server_address
    }
}

/// Whether `host`, from a key of `config.json`, names `registry` (both lowercase): the same
/// host and port, or Docker Hub under any of its names.
fn names_registry(host: &str, registry: &str) -> bool {
    host == registry || (DOCKER_HUB_HOSTS.contains(&host) && DOCKER_HUB_HOSTS.contains(&registry))
}

/// The host (with its port) a key of `auths` names: a URL loses its scheme and path.
fn host_of(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn config(document: Value) -> DockerConfig {
        DockerConfig::parse(document.to_string().as_bytes()).unwrap()
    }

    fn basic(user: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    }

    /// The JSON an `X-Registry-Auth` value carries.
    fn decoded(auth: &RegistryAuth) -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE
            .decode(auth.header_value().expose_secret())
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn hub_credentials_are_found_under_dockers_own_key_or_a_bare_host() {
        for key in [
            DOCKER_HUB_KEY,
            "docker.io",
            "index.docker.io",
            "https://registry-1.docker.io",
        ] {
            let file = config(json!({ "auths": { key: { "auth": basic("me", "pw") } } }));
            let auth = file.for_registry("docker.io").expect(key);
            assert_eq!(
                decoded(auth),
                json!({ "username": "me", "password": "pw", "serveraddress": key })
            );
        }
    }

    #[test]
    fn dockers_own_hub_key_wins_over_another_naming_hub() {
        let file = config(json!({ "auths": {
            "docker.io": { "auth": basic("old", "x") },
            DOCKER_HUB_KEY: { "auth": basic("me", "pw") },
        } }));
        assert_eq!(
            decoded(file.for_registry("docker.io").unwrap())["username"],
            "me"
        );
    }

    #[test]
    fn other_registries_are_matched_by_host_and_port_only() {
        let file = config(json!({ "auths": {
            "127.0.0.1:5000": { "auth": basic("local", "pw") },
            "https://Registry.Example.com/v2/": { "username": "ci", "password": "secret" },
        } }));
        assert_eq!(
            decoded(file.for_registry("127.0.0.1:5000").unwrap())["username"],
            "local"
        );
        assert!(file.for_registry("127.0.0.1:5001").is_none());
        assert!(file.for_registry("127.0.0.1").is_none());
        let example = file.for_registry("registry.example.com").unwrap();
        assert_eq!(decoded(example)["password"], "secret");
        assert_eq!(example.server_address(), "https://Registry.Example.com/v2/");
        assert!(file.for_registry("docker.io").is_none());
    }

    #[test]
    fn an_identity_token_is_sent_instead_of_a_password() {
        let file = config(json!({ "auths": {
            "ghcr.io": { "auth": basic("<token>", ""), "identitytoken": "tok" }
        } }));
        assert_eq!(
            decoded(file.for_registry("ghcr.io").unwrap()),
            json!({ "identitytoken": "tok", "serveraddress": "ghcr.io" })
        );
    }

    #[test]
    fn the_header_is_url_safe_base64_even_where_standard_base64_is_not() {
        // `?>` in the JSON gives `/` and `+` in standard base64; the Engine refuses those.
        let file = config(json!({ "auths": { "r.example": { "auth": basic("u", "??>>??") } } }));
        let header = file.for_registry("r.example").unwrap().header_value();
        let standard = base64::engine::general_purpose::STANDARD.encode(
            base64::engine::general_purpose::URL_SAFE
                .decode(header.expose_secret())
                .unwrap(),
        );
        assert!(
            standard.contains('/') || standard.contains('+'),
            "{standard}"
        );
        assert!(!header.expose_secret().contains(['/', '+']));
    }

    #[test]
    fn helpers_are_reported_for_the_registries_they_serve() {
        let store = config(json!({ "credsStore": "desktop" }));
        assert!(store.has_helper_for("docker.io") && store.has_helper_for("ghcr.io"));
        let helpers = config(
            json!({ "credHelpers": { "123.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login" } }),
        );
        assert!(helpers.has_helper_for("123.dkr.ecr.eu-west-1.amazonaws.com"));
        assert!(!helpers.has_helper_for("ghcr.io"));
        assert!(!config(json!({})).has_helper_for("docker.io"));
    }

    #[test]
    fn broken_entries_are_refused_without_quoting_them() {
        for (document, expected) in [
            (
                json!({ "auths": { "r.example": { "auth": "%%%not-base64-secret" } } }),
                "not base64",
            ),
            (
                json!({ "auths": { "r.example": { "auth": base64::engine::general_purpose::STANDARD.encode("nocolon") } } }),
                "no `:`",
            ),
            (
                json!({ "auths": "secret-text" }),
                "not the JSON of a Docker config",
            ),
        ] {
            let error = DockerConfig::parse(document.to_string().as_bytes()).unwrap_err();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let file = config(
            json!({ "auths": { "r.example": { "auth": basic("me", "hunter2"), "identitytoken": "tok-123" } } }),
        );
        let shown = format!("{file:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok-123"),
            "{shown}"
        );
    }

    #[test]
    fn a_missing_file_means_no_credentials_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = DockerConfig::load(Some(dir.path())).unwrap();
        assert!(empty.for_registry("docker.io").is_none());
        std::fs::write(dir.path().join("config.json"), b"{ not json").unwrap();
        let error = DockerConfig::load(Some(dir.path())).unwrap_err();
        assert!(error.to_string().contains("config.json"), "{error}");
    }
}
