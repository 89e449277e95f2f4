//! The outbound guard: every call tellify makes to a URL a user supplied (webhook, chat and
//! engine contact points, metric backends, imports) goes through one [`OutboundClient`]
//! built here, so a user cannot make the server reach what only the server can reach.
//!
//! By default the guard refuses loopback, unspecified, private (RFC 1918), shared (CGNAT),
//! link-local (with the cloud metadata addresses), multicast, broadcast, unique-local,
//! site-local, documentation, benchmarking and reserved addresses; IPv6 forms that carry an
//! IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged by that address. The
//! check runs on the address actually connected to: the client's resolver drops refused
//! addresses after DNS resolution (so `localhost` or a name pointing at 10.0.0.5 is refused
//! too), and a URL whose host is an IP literal, which reqwest connects to without asking the
//! resolver, is checked before the request is built. Redirects are never followed and
//! proxies from the environment are not used, since either would connect somewhere the
//! guard did not see.
//!
//! An operator opens the guard for internal backends with `[outbound] allow`: IP addresses
//! and CIDR ranges allow those resolved addresses, host names skip the check for that name.
//!
//! Invariant: no request to a user-supplied URL leaves without the guard, and no byte of an
//! answer beyond a status and a tellify-written reason is shown to the user who supplied it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// `[outbound]` settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSettings {
    /// What outbound calls to user-supplied URLs may reach although the guard refuses it by
    /// default: IP addresses (`10.1.2.3`, `::1`), CIDR ranges (`10.1.0.0/16`) or host names
    /// (`prometheus.internal`, which then skips the check whatever it resolves to).
    pub allow: Vec<String>,
}

/// Why a call was refused: the address (and the name that led to it) and what kind of
/// address it is. Its text is written by tellify alone, so it may be shown to the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{subject} is {reason}; outbound calls to it are refused (an operator can allow it with [outbound] allow)")]
pub struct Denied {
    /// `127.0.0.1`, or `localhost (127.0.0.1)` for a resolved name.
    pub subject: String,
    /// `a loopback address`, `a private address`, ...
    pub reason: String,
}

/// The guard: the default refusals and the operator's exceptions. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct OutboundGuard {
    inner: Arc<Allowed>,
}

#[derive(Debug, Default)]
struct Allowed {
    networks: Vec<Network>,
    /// Lowercase, without a trailing dot.
    hosts: Vec<String>,
}

impl OutboundGuard {
    /// Reads `[outbound] allow`; every entry that is neither an address, a CIDR range nor a
    /// host name is reported with its index.
    pub fn new(settings: &OutboundSettings) -> anyhow::Result<OutboundGuard> {
        let mut allowed = Allowed::default();
        let mut problems = Vec::new();
        for (index, entry) in settings.allow.iter().enumerate() {
            let entry = entry.trim();
            if let Some(network) = Network::parse(entry) {
                allowed.networks.push(network);
            } else if is_host_name(entry) {
                allowed.hosts.push(normal_host(entry));
            } else {
                problems.push(format!(
                    "allow[{index}]: `{entry}` is not an ip address, a cidr range (10.1.0.0/16) or a host name"
                ));
            }
        }
        if !problems.is_empty() {
            anyhow::bail!("{}", problems.join("; "));
        }
        Ok(OutboundGuard {
            inner: Arc::new(allowed),
        })
    }

    /// Whether a connection to `address` is allowed: not refused by default, or inside an
    /// allowed range.
    pub fn check_address(&self, address: IpAddr) -> Result<(), Denied> {
        let Some(reason) = refusal(address) else {
            return Ok(());
        };
        if self.inner.allows_address(address) {
            return Ok(());
        }
        Err(Denied {
            subject: address.to_string(),
            reason,
        })
    }

    /// Whether `host` (as it appears in a URL) is an allowed host name, which skips the check.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = normal_host(host);
        self.inner.hosts.contains(&host)
    }

    /// The check a URL can get before any DNS: an IP-literal host must be allowed. The url
    /// crate reads `http://2130706433/` and `http://0x7f.1/` as IPv4, so those are
    /// literals too. A host name passes here and is checked when it is resolved.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Denied> {
        let Some(host) = url.host_str() else {
            return Ok(());
        };
        // IPv6 literals come bracketed; the url crate has already rewritten other spellings
        // of an IPv4 address (`2130706433`, `0x7f.1`) into dotted form.
        let Ok(address) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return Ok(());
        };
        if self.allows_host(&address.to_string()) {
            return Ok(());
        }
        self.check_address(address)
    }

    /// The write-time check of a user-supplied URL: an absolute http(s) URL with a host
    /// whose literal address (if it is one) is allowed. Names are checked at connect time.
    pub fn check_url_text(&self, text: &str) -> Result<(), String> {
        crate::channels::check_http_url(text)?;
        let url = reqwest::Url::parse(text).map_err(|_| "must be an http or https url")?;
        self.check_url(&url).map_err(|denied| denied.to_string())
    }

    /// The one client for user-supplied URLs: the guarded resolver, no redirects, no
    /// proxies, `timeout` for connecting and for the whole call.
    pub fn client(&self, timeout: Duration) -> anyhow::Result<OutboundClient> {
        let resolver = GuardedResolver {
            guard: self.clone(),
        };
        let http = builder(timeout)
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .build()
            .context("cannot build the outbound http client")?;
        Ok(OutboundClient {
            http,
            guard: Some(self.clone()),
        })
    }
}

/// An HTTP client whose every request is checked by the guard (or, for endpoints the
/// operator configured, such as the SMS provider, by nothing).
#[derive(Clone, Debug)]
pub struct OutboundClient {
    http: reqwest::Client,
    guard: Option<OutboundGuard>,
}

impl OutboundClient {
    /// A client for an endpoint the operator configured, which the guard need not judge;
    /// built the same way otherwise (timeout, no redirects).
    pub fn unguarded(timeout: Duration) -> anyhow::Result<OutboundClient> {
        let http = builder(timeout)
            .build()
            .context("cannot build the http client")?;
        Ok(OutboundClient { http, guard: None })
    }

    /// A request to `url`, or why the guard refuses its literal address. A host name is
    /// judged later, by the resolver, on what it resolves to.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
    ) -> Result<reqwest::RequestBuilder, Denied> {
        if let Some(guard) = &self.guard {
            guard.check_url(&url)?;
        }
        Ok(self.http.request(method, url))
    }

    pub fn get(&self, url: reqwest::Url) -> Result<reqwest::RequestBuilder, Denied> {
        self.request(reqwest::Method::GET, url)
    }

    pub fn post(&self, url: reqwest::Url) -> Result<reqwest::RequestBuilder, Denied> {
        self.request(reqwest::Method::POST, url)
    }

    /// The write-time check of an address for this client (see
    /// [`OutboundGuard::check_url_text`]); an unguarded client checks only the syntax.
    pub fn check_url_text(&self, text: &str) -> Result<(), String> {
        match &self.guard {
            Some(guard) => guard.check_url_text(text),
            None => crate::channels::check_http_url(text),
        }
    }
}

/// The guard's refusal behind a failed request, if the guard is why it failed: the
/// resolver's error travels inside reqwest's and hyper's errors.
pub fn denied_by_guard(error: &reqwest::Error) -> Option<Denied> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(denied) = cause.downcast_ref::<Denied>() {
            return Some(denied.clone());
        }
        source = cause.source();
    }
    None
}

/// Why reading an answer failed.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("answer broke off")]
    BrokeOff(#[source] reqwest::Error),
}

/// Reads a response body of at most `max` bytes; a longer one fails as soon as it is known
/// to be longer (by its `Content-Length` or while reading), so memory stays bounded.
pub async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, AnswerError> {
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(AnswerError::TooLarge(max));
    }
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > max {
                    return Err(AnswerError::TooLarge(max));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(error) => return Err(AnswerError::BrokeOff(error.without_url())),
        }
    }
}

/// Why `address` is refused by default, or `None` when it is an ordinary public address.
pub fn refusal(address: IpAddr) -> Option<String> {
    match address {
        IpAddr::V4(v4) => refusal_v4(v4).map(str::to_string),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

/// The shared builder: TLS provider in place, timeouts, no redirects (a redirect would turn a
/// POST into a GET, carry a signed payload to a host the user never registered, or lead the
/// guard's client to an address it refuses).
fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race against another installer is fine: a provider is then in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tellify/", env!("CARGO_PKG_VERSION")))
}

/// Resolves names with the system resolver and keeps only the addresses the guard allows.
struct GuardedResolver {
    guard: OutboundGuard,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // Port 0: the connector puts the URL's port on every address.
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if guard.allows_host(&host) {
                let addresses: reqwest::dns::Addrs = Box::new(found.into_iter());
                return Ok(addresses);
            }
            let mut kept = Vec::with_capacity(found.len());
            let mut first_refused = None;
            for address in found {
                match guard.check_address(address.ip()) {
                    Ok(()) => kept.push(address),
                    Err(denied) => {
                        first_refused.get_or_insert(denied);
                    }
                }
            }
            if kept.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> = match first_refused {
                    Some(denied) => Box::new(Denied {
                        subject: format!("{host} ({})", denied.subject),
                        reason: denied.reason,
                    }),
                    None => format!("{host} has no address").into(),
                };
                return Err(error);
            }
            let addresses: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(addresses)
        })
    }
}

impl Allowed {
    fn allows_address(&self, address: IpAddr) -> bool {
        let embedded = match address {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.networks.iter().any(|network| {
            network.contains(address) || embedded.is_some_and(|v4| network.contains(v4))
        })
    }
}

/// An IP network: an address and a prefix length; a single address is a full-length prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// `10.1.0.0/16`, `fd00::/8`, `10.1.2.3` or `::1`; host bits of a range are ignored.
    fn parse(text: &str) -> Option<Network> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().ok()?;
        let longest = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) if prefix.bytes().all(|byte| byte.is_ascii_digit()) => {
                prefix.parse::<u8>().ok()?
            }
            Some(_) => return None,
            None => longest,
        };
        if prefix > longest {
            return None;
        }
        Some(Network { address, prefix })
    }

    fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => same_prefix(
                u128::from(network.to_bits()),
                u128::from(address.to_bits()),
                32,
                self.prefix,
            ),
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                same_prefix(network.to_bits(), address.to_bits(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn same_prefix(network: u128, address: u128, width: u8, prefix: u8) -> bool {
    let shift = u32::from(width - prefix.min(width));
    network.checked_shr(shift).unwrap_or(0) == address.checked_shr(shift).unwrap_or(0)
}

fn in_v4(address: Ipv4Addr, network: [u8; 4], prefix: u8) -> bool {
    same_prefix(
        u128::from(Ipv4Addr::from(network).to_bits()),
        u128::from(address.to_bits()),
        32,
        prefix,
    )
}

fn in_v6(address: Ipv6Addr, network: Ipv6Addr, prefix: u8) -> bool {
    same_prefix(network.to_bits(), address.to_bits(), 128, prefix)
}

fn refusal_v4(address: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u8, &str)] = &[
        ([0, 0, 0, 0], 32, "an unspecified address"),
        ([0, 0, 0, 0], 8, "a \"this network\" address"),
        ([127, 0, 0, 0], 8, "a loopback address"),
        ([10, 0, 0, 0], 8, "a private address"),
        ([172, 16, 0, 0], 12, "a private address"),
        ([192, 168, 0, 0], 16, "a private address"),
        ([100, 64, 0, 0], 10, "a shared (carrier-grade nat) address"),
        (
            [169, 254, 169, 254],
            32,
            "a link-local address (cloud metadata)",
        ),
        ([169, 254, 0, 0], 16, "a link-local address"),
        (
            [192, 0, 0, 0],
            24,
            "a reserved address (ietf protocol assignments)",
        ),
        ([192, 0, 2, 0], 24, "a documentation address"),
        ([198, 51, 100, 0], 24, "a documentation address"),
        ([203, 0, 113, 0], 24, "a documentation address"),
        ([198, 18, 0, 0], 15, "a benchmarking address"),
        ([192, 88, 99, 0], 24, "a reserved address (6to4 relay)"),
        ([224, 0, 0, 0], 4, "a multicast address"),
        ([255, 255, 255, 255], 32, "a broadcast address"),
        ([240, 0, 0, 0], 4, "a reserved address"),
    ];
    for (network, prefix, reason) in RANGES {
        if in_v4(address, *network, *prefix) {
            return Some(reason);
        }
    }
    None
}

fn refusal_v6(address: Ipv6Addr) -> Option<String> {
    if address == Ipv6Addr::UNSPECIFIED {
        return Some("an unspecified address".to_string());
    }
    if address == Ipv6Addr::LOCALHOST {
        return Some("a loopback address".to_string());
    }
    if let Some(v4) = embedded_v4(address) {
        return refusal_v4(v4).map(|reason| format!("{reason} (as {v4} inside ipv6)"));
    }
    const RANGES: &[(Ipv6Addr, u8, &str)] = &[
        (
            Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
            128,
            "a unique local address (cloud metadata)",
        ),
        (
            Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
            7,
            "a unique local address",
        ),
        (
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            10,
            "a link-local address",
        ),
        (
            Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
            10,
            "a site-local address",
        ),
        (
            Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
            8,
            "a multicast address",
        ),
        (
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
            32,
            "a documentation address",
        ),
        (
            Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
            20,
            "a documentation address",
        ),
        (
            Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
            32,
            "a teredo tunnel address",
        ),
        (
            Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0),
            48,
            "a benchmarking address",
        ),
    ];
    for (network, prefix, reason) in RANGES {
        if in_v6(address, *network, *prefix) {
            return Some((*reason).to_string());
        }
    }
    // Only 2000::/3 is handed out as global unicast; the rest (discard-only 100::/64,
    // local-use NAT64 64:ff9b:1::/48, ...) has no business being a webhook.
    if !in_v6(address, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
        return Some("a reserved address".to_string());
    }
    None
}

/// The IPv4 address inside an IPv6 one that stands for it: IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:aabb:ccdd::`.
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = address.to_bits();
    let low = Ipv4Addr::from_bits((bits & 0xffff_ffff) as u32);
    if in_v6(address, Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96)
        || in_v6(address, Ipv6Addr::UNSPECIFIED, 96)
        || in_v6(address, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96)
    {
        return Some(low);
    }
    if in_v6(address, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return Some(Ipv4Addr::from_bits((bits >> 80) as u32));
    }
    None
}

/// A DNS name as URLs carry it: labels of letters, digits, `-` and `_`, separated by dots.
fn is_host_name(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        })
}

fn normal_host(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allow: &[&str]) -> OutboundGuard {
        OutboundGuard::new(&OutboundSettings {
            allow: allow.iter().map(|entry| entry.to_string()).collect(),
        })
        .unwrap()
    }

    fn reason(text: &str) -> Option<String> {
        refusal(text.parse().unwrap())
    }

    #[test]
    fn every_default_refused_range_is_refused() {
        let refused = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "this network"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "carrier-grade nat"),
            ("100.127.255.255", "carrier-grade nat"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("192.0.0.192", "reserved"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.1", "documentation"),
            ("203.0.113.1", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "cloud metadata"),
            ("2002:7f00:1::", "loopback"),
            ("2002:c0a8:101::1", "private"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fd00:ec2::254", "cloud metadata"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("2001::1", "teredo"),
            ("2001:2::1", "benchmarking"),
            ("100::1", "reserved"),
            ("64:ff9b:1::1", "reserved"),
        ];
        for (address, expected) in refused {
            let found = reason(address).unwrap_or_else(|| panic!("{address} allowed"));
            assert!(found.contains(expected), "{address}: {found}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(reason(address), None, "{address}");
        }
    }

    #[test]
    fn allow_entries_are_ranges_addresses_or_names_and_nothing_else() {
        let guard = guard(&["10.1.0.0/16", "::1", "Prometheus.Internal.", "127.0.0.0/8"]);
        assert!(guard.check_address("10.1.200.3".parse().unwrap()).is_ok());
        assert!(guard.check_address("10.2.0.1".parse().unwrap()).is_err());
        assert!(guard.check_address("::1".parse().unwrap()).is_ok());
        assert!(guard
            .check_address("::ffff:127.0.0.9".parse().unwrap())
            .is_ok());
        assert!(guard.allows_host("prometheus.internal"));
        assert!(guard.allows_host("PROMETHEUS.internal."));
        assert!(!guard.allows_host("other.internal"));

        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/x", "http://x", "a b", ""] {
            let error = OutboundGuard::new(&OutboundSettings {
                allow: vec![bad.to_string()],
            })
            .unwrap_err()
            .to_string();
            assert!(error.contains("allow[0]"), "{bad}: {error}");
        }
    }

    #[test]
    fn literal_hosts_in_every_spelling_are_checked_and_names_wait_for_dns() {
        let guard = guard(&[]);
        for url in [
            "http://127.0.0.1:8080/",
            "http://[::1]:8080/",
            "http://0.0.0.0/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://017700000001/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:7f00:1]/",
            "http://[fd00:ec2::254]/",
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            assert!(guard.check_url(&parsed).is_err(), "{url} passed");
        }
        assert!(guard
            .check_url(&reqwest::Url::parse("http://localhost:1/").unwrap())
            .is_ok());
        assert!(guard
            .check_url(&reqwest::Url::parse("https://8.8.8.8/").unwrap())
            .is_ok());
        let error = guard.check_url_text("http://127.0.0.1:9/x").unwrap_err();
        assert_eq!(
            error,
            "127.0.0.1 is a loopback address; outbound calls to it are refused (an operator can allow it with [outbound] allow)"
        );
        assert!(guard.check_url_text("ftp://example.com/").is_err());
    }

    #[test]
    fn an_allowed_host_name_skips_the_literal_check_too() {
        let guard = guard(&["127.0.0.1"]);
        assert!(guard
            .check_url(&reqwest::Url::parse("http://127.0.0.1:5/").unwrap())
            .is_ok());
        assert!(guard
            .check_url(&reqwest::Url::parse("http://127.0.0.2:5/").unwrap())
            .is_err());
    }
}
