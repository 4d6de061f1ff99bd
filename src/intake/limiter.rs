//! Failed authentications, counted per client address: past the limit, a client is refused
//! with `429` until its one-minute window ends, whatever key it sends.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use ipnet::IpNet;
use tokio::time::Instant;
use warp::http::HeaderMap;

/// Length of a counting window.
const WINDOW: Duration = Duration::from_secs(60);

/// Clients remembered before expired windows are swept away.
const SWEEP_ABOVE: usize = 10_000;

/// Counts failed authentications per client in fixed one-minute windows.
#[derive(Debug)]
pub struct FailureLimiter {
    /// Failures allowed per window.
    limit: u32,
    /// Per client: when its window started, and its failures in it.
    clients: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailureLimiter {
    /// A limiter allowing `limit` failures per client per minute.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(time to wait)` when `client` has used up its failures for this window.
    pub fn blocked(&self, client: IpAddr) -> Option<Duration> {
        let clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (started, failures) = clients.get(&client)?;
        let elapsed = started.elapsed();
        (elapsed < WINDOW && *failures >= self.limit).then(|| WINDOW - elapsed)
    }

    /// Counts one failed authentication of `client`.
    pub fn record_failure(&self, client: IpAddr) {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if clients.len() > SWEEP_ABOVE {
            clients.retain(|_, (started, _)| started.elapsed() < WINDOW);
        }
        let now = Instant::now();
        let entry = clients.entry(client).or_insert((now, 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not one of the trusted proxies.
pub fn client_address(
    remote: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = remote.map_or(IpAddr::from([0, 0, 0, 0]), |addr| addr.ip());
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn failures_past_the_limit_block_until_the_window_ends() {
        let limiter = FailureLimiter::new(3);
        for _ in 0..3 {
            assert_eq!(limiter.blocked(ip("203.0.113.7")), None);
            limiter.record_failure(ip("203.0.113.7"));
        }
        let wait = limiter.blocked(ip("203.0.113.7")).expect("blocked");
        assert!(wait <= WINDOW && wait > Duration::from_secs(59));
        assert_eq!(
            limiter.blocked(ip("203.0.113.8")),
            None,
            "other clients are not"
        );
        tokio::time::advance(WINDOW).await;
        assert_eq!(limiter.blocked(ip("203.0.113.7")), None);
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.9, 10.0.0.3".parse().unwrap());
        let proxy = Some("10.0.0.2:4711".parse().unwrap());
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_address(proxy, &headers, &trusted),
            ip("198.51.100.9")
        );
        assert_eq!(
            client_address(proxy, &headers, &[]),
            ip("10.0.0.2"),
            "untrusted peer: header ignored"
        );
        let direct = Some("198.51.100.20:5000".parse().unwrap());
        assert_eq!(
            client_address(direct, &headers, &trusted),
            ip("198.51.100.20")
        );
    }
}
