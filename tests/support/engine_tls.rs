//! A TCP front with TLS for the engine's Unix socket, as `dockerd --tlsverify` offers:
//! the engine's certificate and the client's are both from a private CA made up here, and
//! the client must present its own. The files a client needs (`ca.pem`, `cert.pem`,
//! `key.pem`) are written to a folder, as `DOCKER_CERT_PATH` names it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls::RootCertStore;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, UnixStream};
use tokio_rustls::TlsAcceptor;

fn certificate_authority() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "autoredeploy test engine CA");
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

pub struct EngineTls {
    pub address: SocketAddr,
    /// `ca.pem`, `cert.pem` and `key.pem` of a client the engine accepts.
    pub client_files: tempfile::TempDir,
    /// The same, for a client whose certificate comes from another CA.
    pub stranger_files: tempfile::TempDir,
}

impl EngineTls {
    /// Terminates TLS for `127.0.0.1`, requiring a client certificate of its CA, and
    /// passes the plain bytes on to the engine at `socket`.
    pub async fn start(socket: &Path) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = certificate_authority();
        let server_key = KeyPair::generate().unwrap();
        let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        // TLS 1.2: a refused client certificate then fails the handshake itself. With
        // TLS 1.3 the refusal comes after the client's side of it, and the client may see
        // only the connection reset, which it cannot tell from an outage.
        let config =
            rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
                .with_client_cert_verifier(verifier)
                .with_single_cert(
                    vec![server_cert.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
                )
                .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let client_files = client_files(&ca, &ca);
        let stranger_files = client_files_of_another_ca(&ca);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let socket: PathBuf = socket.to_owned();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (acceptor, socket) = (acceptor.clone(), socket.clone());
                tokio::spawn(async move {
                    let Ok(mut inbound) = acceptor.accept(inbound).await else {
                        return;
                    };
                    if let Ok(mut engine) = UnixStream::connect(&socket).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut engine).await;
                    }
                });
            }
        });
        Self {
            address,
            client_files,
            stranger_files,
        }
    }
}

/// The files of a client whose certificate `issuer` signed, trusting `engine_ca`.
fn client_files(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    engine_ca: &CertifiedIssuer<'static, KeyPair>,
) -> tempfile::TempDir {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "autoredeploy");
    let certificate = params.signed_by(&key, issuer).unwrap();
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("ca.pem"), engine_ca.pem()).unwrap();
    std::fs::write(folder.path().join("cert.pem"), certificate.pem()).unwrap();
    std::fs::write(folder.path().join("key.pem"), key.serialize_pem()).unwrap();
    folder
}

fn client_files_of_another_ca(engine_ca: &CertifiedIssuer<'static, KeyPair>) -> tempfile::TempDir {
    client_files(&certificate_authority(), engine_ca)
}
