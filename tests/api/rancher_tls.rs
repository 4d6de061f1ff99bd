//! autoredeploy against a Rancher served over https with a certificate from a private CA.

use crate::helpers::{named, spawn_app_with};
use crate::support::fake_rancher::{FakeRancher, service};
use crate::support::tls_proxy::TlsProxy;

#[tokio::test]
async fn a_rancher_behind_a_private_ca_is_trusted_through_rancher_ca_file() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let https = TlsProxy::start(rancher.address).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &https.ca_pem).unwrap();

    let mut app = spawn_app_with(
        &rancher,
        &[
            ("RANCHER_HOST", &https.host()),
            ("RANCHER_CA_FILE", &ca_file.display().to_string()),
        ],
    )
    .await;
    let (outcomes, job) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["web"], "{job:?}");
    assert_eq!(
        rancher.upgrades_per_service().get("1s1"),
        Some(&1),
        "upgraded through https"
    );
}

#[tokio::test]
async fn without_the_ca_the_certificate_is_refused_before_any_request() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let https = TlsProxy::start(rancher.address).await;

    let mut app = spawn_app_with(
        &rancher,
        &[
            ("RANCHER_HOST", &https.host()),
            ("RANCHER_RETRY_ATTEMPTS", "0"),
            ("AUTOREDEPLOY_JOB_RETRIES", "1"),
        ],
    )
    .await;
    let (outcomes, job) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert!(outcomes.is_empty());
    let error = job.scan.unwrap_err();
    assert!(
        error.contains("certificate") && error.contains("RANCHER_CA_FILE"),
        "{error}"
    );
    assert!(rancher.requests().is_empty(), "nothing reached Rancher");
}

#[tokio::test]
async fn skipping_verification_reaches_a_rancher_with_an_unknown_ca() {
    let rancher = FakeRancher::start(vec![service("web", "docker:myorg/web:latest")]).await;
    let https = TlsProxy::start(rancher.address).await;

    let mut app = spawn_app_with(
        &rancher,
        &[
            ("RANCHER_HOST", &https.host()),
            ("RANCHER_INSECURE_SKIP_VERIFY", "true"),
        ],
    )
    .await;
    let (outcomes, _) = app.push_and_wait("myorg/web", Some("latest")).await;
    assert_eq!(named(&outcomes, "upgraded"), ["web"]);
}
