//! Which certificates Rancher may present: one TLS setup shared by every connection to it,
//! whichever HTTP client makes the connection.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::RancherError;
use crate::config::RancherSettings;

/// The TLS client setup for Rancher: the system's trusted roots plus those of
/// `RANCHER_CA_FILE`, or no verification at all with `RANCHER_INSECURE_SKIP_VERIFY`. Plain
/// http needs no roots, so none are loaded for it.
pub(super) fn client_config(settings: &RancherSettings) -> Result<ClientConfig, RancherError> {
    crate::install_crypto_provider();
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| setup_error("setting up TLS", error))?;
    if settings.services_url.scheme() == "http" {
        return Ok(builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth());
    }
    let verifier: Arc<dyn ServerCertVerifier> = if settings.insecure_skip_verify {
        Arc::new(AcceptAnyCertificate(provider))
    } else if let Some(pem) = &settings.ca_bundle {
        let roots = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| setup_error("reading RANCHER_CA_FILE", error))?;
        Arc::new(
            rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider)
                .map_err(|error| setup_error(NO_SYSTEM_ROOTS, error))?,
        )
    } else {
        Arc::new(
            rustls_platform_verifier::Verifier::new(provider)
                .map_err(|error| setup_error(NO_SYSTEM_ROOTS, error))?,
        )
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

const NO_SYSTEM_ROOTS: &str = "setting up https: the system CA certificates are needed (or SSL_CERT_FILE naming a PEM bundle)";

fn setup_error(what: &str, error: impl std::error::Error + Send + Sync + 'static) -> RancherError {
    RancherError::Transport {
        what: what.to_owned(),
        source: Box::new(error),
    }
}

/// `RANCHER_INSECURE_SKIP_VERIFY`: any certificate is taken for Rancher's. The handshake's
/// signatures are still checked, so the server holds the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
