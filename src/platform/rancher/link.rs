//! A warning at every start when the Rancher API key would travel unprotected.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::RancherSettings;

/// Warns, at every start, when the Rancher credentials are not protected in transit.
pub(super) async fn warn_about_the_link(rancher: &RancherSettings) {
    if rancher.insecure_skip_verify {
        tracing::warn!(
            "RANCHER_INSECURE_SKIP_VERIFY=true: Rancher's certificate is not verified, so \
             anyone on the path can pose as Rancher and read the API key; use RANCHER_CA_FILE"
        );
    }
    let url = &rancher.api_base;
    if url.scheme() != "http" {
        return;
    }
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::lookup_host((host, port)),
        )
        .await
        {
            Ok(Ok(found)) => found.map(|address| address.ip()).collect(),
            _ => Vec::new(),
        },
    };
    if addresses.is_empty() || !addresses.iter().all(|ip| is_private(*ip)) {
        tracing::warn!(
            host,
            "the Rancher API key is sent over plain http to an address that is not loopback \
             or private; use an https RANCHER_HOST"
        );
    }
}

/// Loopback, private, link-local or carrier-grade NAT: not reachable from the internet.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(ip) => ip.is_loopback() || ip.is_unique_local() || ip.is_unicast_link_local(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd00::5",
            "fe80::1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "203.0.113.10", "100.128.0.1", "2001:db8::1"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }
}
