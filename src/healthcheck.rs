//! `autoredeploy healthcheck`: asks the running server's `/health`, for container health
//! checks in an image that has no shell or curl.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config::Settings;

/// Exit status 0 when `/health` answers 200 within a few seconds, 1 otherwise.
pub async fn run() -> std::process::ExitCode {
    let address = match local_address() {
        Ok(address) => address,
        Err(reason) => {
            eprintln!("healthcheck: {reason}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let url = format!("http://{address}/health");
    crate::install_crypto_provider();
    let answer = async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            // Plain http to loopback: no CA bundle needed.
            .tls_certs_only(Vec::new())
            .build()?;
        client.get(&url).send().await
    }
    .await;
    match answer {
        Ok(response) if response.status().is_success() => std::process::ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!("healthcheck: {url} answered {}", response.status());
            std::process::ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("healthcheck: {url} did not answer: {}", err.without_url());
            std::process::ExitCode::FAILURE
        }
    }
}

/// Where the server of this container listens, reached over loopback when it listens on
/// every address.
fn local_address() -> Result<SocketAddr, String> {
    let settings = Settings::from_env().map_err(|err| err.to_string())?;
    let ip = match settings.bind_address {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, settings.bind_port))
}
