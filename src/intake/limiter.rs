//! Failed authentications, counted per client: past the limit, a client is refused with
//! `429` until its one-minute window ends, whatever key it sends.
//!
//! A client is an IPv4 address, or the /64 network of an IPv6 address (one host is routinely
//! given a whole /64, so counting IPv6 addresses one by one would let it guess without end).
//! An IPv4 address written as IPv4-mapped IPv6 (`::ffff:203.0.113.7`) is that IPv4 address.
//!
//! This is a small map rather than `governor`'s keyed limiter: `governor` cannot tell whether
//! a client is blocked without spending one of its cells (a request must be refused before
//! its key is checked, and only failures may count), its keyed store grows without a bound
//! until swept by hand, and its clock is not tokio's, so the windows could not be tested with
//! paused time.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ipnet::IpNet;
use tokio::time::Instant;
use warp::http::HeaderMap;

/// Length of a counting window.
const WINDOW: Duration = Duration::from_secs(60);

/// Most clients remembered at once: a few megabytes at most.
const MAX_CLIENTS: usize = 65_536;

/// What failures are counted by: an IPv4 address, or an IPv6 /64 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientGroup {
    /// One IPv4 address (also when it arrived as IPv4-mapped IPv6).
    V4(Ipv4Addr),
    /// One IPv6 /64 network, by its first 64 bits.
    V6Network(u64),
}

impl ClientGroup {
    /// The group `address` is counted in.
    pub fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Network((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for ClientGroup {
    /// `203.0.113.7`, or `2001:db8:1:2::/64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(address) => write!(f, "{address}"),
            Self::V6Network(prefix) => {
                write!(f, "{}/64", Ipv6Addr::from(u128::from(*prefix) << 64))
            }
        }
    }
}

/// Whose failures a refusal is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// The client's own failures.
    Client(ClientGroup),
    /// The failures of all the clients that were not remembered because too many others
    /// were (see [`FailureLimiter`]).
    Overflow,
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client(group) => group.fmt(f),
            Self::Overflow => write!(
                f,
                "the shared count of addresses not remembered (more than {MAX_CLIENTS} failed \
                 within a minute)"
            ),
        }
    }
}

/// A client refused for failing too often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Time left until the window ends and the client may try again.
    pub retry_after: Duration,
    /// The count that reached the limit.
    pub counter: Counter,
}

/// One counting window: when it started and the failures in it.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl Window {
    /// A window starting `now` with one failure.
    fn first_failure(now: Instant) -> Self {
        Self {
            started: now,
            failures: 1,
        }
    }

    fn is_current(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) < WINDOW
    }

    /// The time left in this window when its failures have reached `limit`.
    fn lockout_left(&self, now: Instant, limit: u32) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.started);
        (elapsed < WINDOW && self.failures >= limit).then(|| WINDOW - elapsed)
    }

    /// Counts one failure, in a new window if this one has ended.
    fn count_failure(&mut self, now: Instant) {
        if self.is_current(now) {
            self.failures = self.failures.saturating_add(1);
        } else {
            *self = Self::first_failure(now);
        }
    }
}

/// The counts, behind the limiter's lock.
#[derive(Debug)]
struct Counts {
    /// Per remembered client, its current (or ended, until swept) window.
    clients: HashMap<ClientGroup, Window>,
    /// The shared window of the clients that found no room in `clients`.
    overflow: Option<Window>,
    /// When ended windows are next swept out of `clients`.
    next_sweep: Instant,
}

/// Counts failed authentications per client (IPv4 address or IPv6 /64) in fixed one-minute
/// windows, in bounded memory.
///
/// At most `MAX_CLIENTS` (65,536) clients are remembered. Ended windows are swept out at most
/// once a minute, by the first failure after the minute is up, so a failure never costs more
/// than a map lookup otherwise. A client that fails while the map is full, after that sweep,
/// is not remembered on its own: its failures are counted in one **overflow** window shared
/// by every client that is not remembered. Once that shared count reaches the limit, every
/// client not remembered is refused until the shared window ends, whatever key it sends;
/// remembered clients keep their own counts. So a flood from more addresses than can be
/// remembered is still limited as a whole (failing open would let it guess without end),
/// at the price that a legitimate caller who has not failed itself may be refused during
/// such a flood; such a refusal of the right key is logged as an error by the caller.
#[derive(Debug)]
pub struct FailureLimiter {
    /// Failures allowed per window.
    limit: u32,
    /// Clients remembered at most.
    max_clients: usize,
    counts: Mutex<Counts>,
}

impl FailureLimiter {
    /// A limiter allowing `limit` failures per client per minute.
    pub fn new(limit: u32) -> Self {
        Self::with_room_for(limit, MAX_CLIENTS)
    }

    /// A limiter remembering at most `max_clients` clients.
    fn with_room_for(limit: u32, max_clients: usize) -> Self {
        Self {
            limit,
            max_clients,
            counts: Mutex::new(Counts {
                clients: HashMap::new(),
                overflow: None,
                next_sweep: Instant::now() + WINDOW,
            }),
        }
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `Some` when `client` has used up its failures for this window (or, if it is not
    /// remembered, when the overflow window has); counts nothing.
    pub fn blocked(&self, client: IpAddr) -> Option<Lockout> {
        let now = Instant::now();
        let group = ClientGroup::of(client);
        let counts = self.counts();
        let (window, counter) = match counts.clients.get(&group) {
            Some(window) => (window, Counter::Client(group)),
            None => (counts.overflow.as_ref()?, Counter::Overflow),
        };
        let retry_after = window.lockout_left(now, self.limit)?;
        Some(Lockout {
            retry_after,
            counter,
        })
    }

    /// Counts one failed authentication of `client`.
    pub fn record_failure(&self, client: IpAddr) {
        let now = Instant::now();
        let group = ClientGroup::of(client);
        let mut counts = self.counts();
        if now >= counts.next_sweep {
            counts.clients.retain(|_, window| window.is_current(now));
            counts.next_sweep = now + WINDOW;
        }
        if let Some(window) = counts.clients.get_mut(&group) {
            window.count_failure(now);
        } else if counts.clients.len() < self.max_clients {
            counts.clients.insert(group, Window::first_failure(now));
        } else {
            match &mut counts.overflow {
                Some(window) if window.is_current(now) => window.count_failure(now),
                overflow => {
                    *overflow = Some(Window::first_failure(now));
                    tracing::warn!(
                        remembered = self.max_clients,
                        "more addresses failed to authenticate within a minute than can be \
                         remembered; the failures of the others are counted together, and \
                         past the limit all of them are refused until the minute ends"
                    );
                }
            }
        }
    }

    /// How many clients are remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.counts().clients.len()
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
        let wait = limiter
            .blocked(ip("203.0.113.7"))
            .expect("blocked")
            .retry_after;
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
    fn ipv6_clients_are_grouped_by_their_64_bit_network() {
        let group = |text: &str| ClientGroup::of(ip(text));
        assert_eq!(
            group("2001:db8:1:2::1"),
            group("2001:db8:1:2:ffff:ab:cd:ef")
        );
        assert_ne!(group("2001:db8:1:2::1"), group("2001:db8:1:3::1"));
        assert_eq!(group("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(group("::ffff:203.0.113.7"), group("203.0.113.7"));
        assert_eq!(group("::ffff:203.0.113.7").to_string(), "203.0.113.7");
        assert_ne!(group("203.0.113.7"), group("203.0.113.8"));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_from_anywhere_in_a_64_count_together() {
        let limiter = FailureLimiter::new(3);
        for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:a:b:c:d"] {
            assert_eq!(limiter.blocked(ip(host)), None);
            limiter.record_failure(ip(host));
        }
        let lockout = limiter.blocked(ip("2001:db8:1:2::99")).expect("blocked");
        assert_eq!(
            lockout.counter,
            Counter::Client(ClientGroup::of(ip("2001:db8:1:2::")))
        );
        assert_eq!(limiter.blocked(ip("2001:db8:1:3::1")), None, "next /64");
        // An IPv4 client is the same whether it arrives as IPv4 or IPv4-mapped IPv6.
        for _ in 0..3 {
            limiter.record_failure(ip("::ffff:198.51.100.4"));
        }
        assert!(limiter.blocked(ip("198.51.100.4")).is_some());
        assert_eq!(limiter.blocked(ip("198.51.100.5")), None);
    }

    #[tokio::test(start_paused = true)]
    async fn clients_beyond_the_cap_share_one_overflow_count() {
        let limiter = FailureLimiter::with_room_for(2, 3);
        for remembered in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            limiter.record_failure(ip(remembered));
        }
        // A flood of new addresses: each fails once, but they are counted together.
        limiter.record_failure(ip("198.51.100.1"));
        assert_eq!(limiter.blocked(ip("198.51.100.2")), None);
        limiter.record_failure(ip("2001:db8:9::1"));
        assert_eq!(limiter.remembered(), 3, "memory stays bounded");
        for unknown in ["198.51.100.1", "198.51.100.200", "2001:db8:77::1"] {
            let lockout = limiter
                .blocked(ip(unknown))
                .expect("refused as part of the flood");
            assert_eq!(lockout.counter, Counter::Overflow);
            assert!(lockout.retry_after <= WINDOW);
        }
        assert_eq!(
            limiter.blocked(ip("192.0.2.1")),
            None,
            "remembered clients keep their own count"
        );
        limiter.record_failure(ip("192.0.2.1"));
        assert!(matches!(
            limiter.blocked(ip("192.0.2.1")),
            Some(Lockout {
                counter: Counter::Client(_),
                ..
            })
        ));
        // Once the minute is over, the sweep makes room and new clients count on their own.
        tokio::time::advance(WINDOW).await;
        assert_eq!(limiter.blocked(ip("198.51.100.1")), None);
        limiter.record_failure(ip("198.51.100.1"));
        assert_eq!(limiter.remembered(), 1);
        assert_eq!(limiter.blocked(ip("198.51.100.1")), None);
    }

    #[tokio::test(start_paused = true)]
    async fn ended_windows_are_swept_once_a_minute_not_on_every_failure() {
        let limiter = FailureLimiter::new(5);
        let second = Duration::from_secs(1);
        limiter.record_failure(ip("192.0.2.1"));
        tokio::time::advance(30 * second).await;
        limiter.record_failure(ip("192.0.2.2"));
        tokio::time::advance(31 * second).await;
        // 61 s: the first sweep is due; .1 has ended, .2 has not.
        limiter.record_failure(ip("192.0.2.3"));
        assert_eq!(limiter.remembered(), 2);
        tokio::time::advance(39 * second).await;
        // 100 s: .2 has ended too, but the next sweep is only due at 121 s.
        limiter.record_failure(ip("192.0.2.4"));
        assert_eq!(limiter.remembered(), 3);
        tokio::time::advance(21 * second).await;
        // 121 s: .2 and .3 are swept, .4 is still counting.
        limiter.record_failure(ip("192.0.2.5"));
        assert_eq!(limiter.remembered(), 2);
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
