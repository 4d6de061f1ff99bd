//! Connections to the Docker Engine: a Unix socket, or TCP with or without TLS, as
//! `DOCKER_HOST`, `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` say.
//!
//! Each request has a connection of its own. The engine is local or near, its requests are
//! few per container, and some of them (a pull, a stop) last as long as the engine takes:
//! a pool would save little and keep idle connections open for nothing.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

use super::EngineError;
use crate::config::{EngineEndpoint, EngineSettings};

/// A byte stream to the engine.
pub(super) trait EngineStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> EngineStream for T {}

/// How to open a connection to the engine.
#[derive(Clone)]
pub(super) struct Connector {
    endpoint: EngineEndpoint,
    /// The TLS setup, for TCP with `DOCKER_TLS_VERIFY`.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// `DOCKER_HOST` as given, for messages.
    address: String,
}

impl Connector {
    /// The connector of `settings`; fails if the TLS files cannot be read.
    pub fn new(settings: &EngineSettings) -> Result<Self, EngineError> {
        let tls = match (&settings.endpoint, &settings.tls_files) {
            (EngineEndpoint::Tcp { host, .. }, Some(folder)) => {
                let name =
                    ServerName::try_from(host.clone()).map_err(|_| EngineError::Unreachable {
                        address: settings.address.clone(),
                        reason: format!("`{host}` cannot be checked against a TLS certificate"),
                    })?;
                let config = tls_config(folder).map_err(|reason| EngineError::Unreachable {
                    address: settings.address.clone(),
                    reason,
                })?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
            _ => None,
        };
        Ok(Self {
            endpoint: settings.endpoint.clone(),
            tls,
            address: settings.address.clone(),
        })
    }

    /// `DOCKER_HOST`, as given.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Opens a connection.
    pub async fn connect(&self) -> Result<Box<dyn EngineStream>, EngineError> {
        let unreachable = |error: std::io::Error| EngineError::Unreachable {
            address: self.address.clone(),
            reason: error.to_string(),
        };
        match &self.endpoint {
            EngineEndpoint::Unix(path) => match UnixStream::connect(path).await {
                Ok(stream) => Ok(Box::new(stream)),
                Err(error) => Err(EngineError::Unreachable {
                    address: self.address.clone(),
                    reason: match error.kind() {
                        std::io::ErrorKind::NotFound => format!(
                            "there is no socket at {}: mount the engine's socket there, or \
                             set DOCKER_HOST to where it is",
                            path.display()
                        ),
                        std::io::ErrorKind::PermissionDenied => format!(
                            "{} may not be opened by this user: run autoredeploy as root or \
                             in the socket's group",
                            path.display()
                        ),
                        _ => error.to_string(),
                    },
                }),
            },
            EngineEndpoint::Tcp { host, port } => {
                let tcp = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(unreachable)?;
                tcp.set_nodelay(true).map_err(unreachable)?;
                match &self.tls {
                    None => Ok(Box::new(tcp)),
                    Some((connector, name)) => match connector.connect(name.clone(), tcp).await {
                        Ok(stream) => Ok(Box::new(stream)),
                        Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                            Err(EngineError::Handshake {
                                address: self.address.clone(),
                                reason: error.to_string(),
                            })
                        }
                        Err(error) => Err(unreachable(error)),
                    },
                }
            }
        }
    }
}

/// Docker's TLS files in `folder`: the engine's CA (`ca.pem`), and the client's own
/// certificate (`cert.pem`) and key (`key.pem`).
fn tls_config(folder: &Path) -> Result<ClientConfig, String> {
    let read = |name: &str| {
        let path = folder.join(name);
        std::fs::read(&path).map_err(|error| format!("cannot read {}: {error}", path.display()))
    };
    let bad = |name: &str, error: &dyn std::fmt::Display| {
        format!("{} is not a PEM file: {error}", folder.join(name).display())
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&read("ca.pem")?) {
        let certificate = certificate.map_err(|error| bad("ca.pem", &error))?;
        roots
            .add(certificate)
            .map_err(|error| bad("ca.pem", &error))?;
    }
    let chain = CertificateDer::pem_slice_iter(&read("cert.pem")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad("cert.pem", &error))?;
    // The key's error would quote nothing of the key, but say only that it is unreadable.
    let key = PrivateKeyDer::from_pem_slice(&read("key.pem")?).map_err(|_| {
        format!(
            "{} holds no private key in PEM",
            folder.join("key.pem").display()
        )
    })?;
    crate::install_crypto_provider();
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|error| format!("the client certificate and key do not fit: {error}"))
}
