//! `autoredeploy healthcheck`: asks the running server's `/health`, for container health
//! checks in an image that has no shell or curl.
//!
//! It reads `BIND_ADDRESS` and `BIND_PORT` and nothing else: it runs every 30 s, so it must
//! not read secret files, and a setting the server refuses is the server's to report.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config;

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

/// Where the server of this container listens.
fn local_address() -> Result<SocketAddr, String> {
    let listen = config::listen_address_from_env().map_err(|err| err.to_string())?;
    Ok(over_loopback(listen))
}

/// The address the server listens on, reached over loopback when it listens on every
/// address.
fn over_loopback(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(pairs: &[(&str, &str)]) -> Result<String, String> {
        let vars = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        config::listen_address_from_vars(vars)
            .map(|listen| over_loopback(listen).to_string())
            .map_err(|err| err.to_string())
    }

    #[test]
    fn the_address_is_found_with_no_other_variable_set() {
        assert_eq!(address(&[]).unwrap(), "127.0.0.1:8080");
        assert_eq!(address(&[("BIND_PORT", "9090")]).unwrap(), "127.0.0.1:9090");
        assert_eq!(address(&[("BIND_ADDRESS", "::")]).unwrap(), "[::1]:8080");
        assert_eq!(
            address(&[("BIND_ADDRESS", "10.1.2.3"), ("BIND_PORT", "")]).unwrap(),
            "10.1.2.3:8080"
        );
    }

    #[test]
    fn other_settings_are_not_read() {
        // The server would refuse all of these; the healthcheck does not look, and opens no
        // secret file.
        let found = address(&[
            ("BIND_PORT", "9090"),
            ("DOCKER_HUB_KEY_FILE", "/nonexistent/hub-key"),
            ("RANCHER_HOST", "ftp://rancher"),
            ("AUTOREDEPLOY_TARGETS", "swarm"),
        ]);
        assert_eq!(found.unwrap(), "127.0.0.1:9090");
    }

    #[test]
    fn a_bad_address_is_named_as_the_server_names_it() {
        for (name, value) in [("BIND_PORT", "eighty"), ("BIND_ADDRESS", "localhost")] {
            let refused = address(&[(name, value)]).unwrap_err();
            assert!(
                refused.contains(name) && refused.contains(value),
                "{refused}"
            );
        }
    }
}
