//! Where outbound calls may go: the policy every webhook, Slack and SMTP
//! destination is checked against, when a tenant configures it and again
//! on every connection (so a name that resolves elsewhere later, DNS
//! rebinding, gains nothing).
//!
//! Loopback, private, link-local (cloud metadata), unique-local, shared,
//! documentation, multicast and other reserved ranges of IPv4 and IPv6 are
//! refused, and so is the server's own listening port. The operator opens
//! specific hosts or ranges with `[outbound] allow` in `escalator.toml`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How long a name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A range of addresses, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// `10.0.0.0/8`, `fd00::/8`, or a bare address (the whole prefix).
    pub fn parse(s: &str) -> Option<Net> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim_matches(['[', ']']).parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Net { addr, prefix })
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, unmap(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix_eq(u32::from(n).into(), u32::from(a).into(), self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(u128::from(n), u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn prefix_eq(net: u128, addr: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (net >> shift) == (addr >> shift)
}

/// `::ffff:a.b.c.d` is `a.b.c.d`.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The reserved range `ip` is in, if any: no tenant destination may be
/// there unless the operator allows it.
pub fn reserved(ip: IpAddr) -> Option<&'static str> {
    match unmap(ip) {
        IpAddr::V4(v4) => reserved_v4(v4),
        IpAddr::V6(v6) => reserved_v6(v6),
    }
}

fn reserved_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u8, &str)] = &[
        ([0, 0, 0, 0], 8, "this network"),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "shared (carrier-grade NAT)"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local (cloud metadata)"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "6to4 relay"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    let a = u128::from(u32::from(ip));
    RANGES
        .iter()
        .find(|(net, prefix, _)| prefix_eq(u32::from(Ipv4Addr::from(*net)).into(), a, *prefix, 32))
        .map(|(_, _, name)| *name)
}

fn reserved_v6(ip: Ipv6Addr) -> Option<&'static str> {
    const RANGES: &[(u128, u8, &str)] = &[
        // ::, ::1 and the deprecated IPv4-compatible addresses.
        (0, 96, "unspecified, loopback or IPv4-compatible"),
        (0x0064_ff9b_0001 << 80, 48, "local NAT64"),
        (0x0100 << 112, 64, "discard"),
        (0x2001 << 112, 23, "IETF protocol assignments (Teredo)"),
        (0x2001_0db8 << 96, 32, "documentation"),
        (0x3fff << 112, 20, "documentation"),
        (0x5f00 << 112, 16, "segment routing"),
        (0xfc00 << 112, 7, "unique-local"),
        (0xfe80 << 112, 10, "link-local"),
        (0xfec0 << 112, 10, "site-local"),
        (0xff00 << 112, 8, "multicast"),
    ];
    let a = u128::from(ip);
    if let Some((_, _, name)) = RANGES
        .iter()
        .find(|(net, prefix, _)| prefix_eq(*net, a, *prefix, 128))
    {
        return Some(name);
    }
    // Addresses that carry an IPv4 address: NAT64 (64:ff9b::/96) and 6to4
    // (2002::/16) reach whatever that address reaches.
    if prefix_eq(0x0064_ff9b << 96, a, 96, 128) {
        return reserved_v4(Ipv4Addr::from(a as u32));
    }
    if prefix_eq(0x2002 << 112, a, 16, 128) {
        return reserved_v4(Ipv4Addr::from((a >> 80) as u32));
    }
    None
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It is, or resolves to, an address the policy does not allow.
    Denied {
        /// The host as the tenant wrote it.
        host: String,
    },
    /// It is the server's own listening address.
    OwnAddress {
        /// The host as the tenant wrote it.
        host: String,
    },
    /// The name does not resolve (or not in time).
    Unresolvable {
        /// The host as the tenant wrote it.
        host: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // What the tenant reads: whether it is allowed, never which range
        // or port answered.
        match self {
            Refusal::Denied { host } => write!(
                f,
                "refused by policy: {host} is a private or reserved address (the operator's [outbound] allow opens one)"
            ),
            Refusal::OwnAddress { host } => {
                write!(f, "refused by policy: {host} is this server itself")
            }
            Refusal::Unresolvable { host } => write!(f, "{host} does not resolve"),
        }
    }
}

impl std::error::Error for Refusal {}

/// One `[outbound] allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allow {
    /// An address or a range.
    Net(Net),
    /// A host name, exactly (lowercase, no trailing dot).
    Host(String),
    /// Any name under this domain (`*.corp.example`).
    Domain(String),
}

/// The outbound policy: reserved ranges refused, the operator's
/// exceptions allowed.
#[derive(Debug, Default)]
pub struct Policy {
    allow: Vec<Allow>,
    /// The server's own listening address, once bound.
    own: OnceLock<SocketAddr>,
}

impl Policy {
    /// A policy allowing `allow` (addresses, `addr/prefix` ranges, host
    /// names and `*.domain` patterns) besides every public address.
    pub fn new(allow: &[String]) -> Result<Policy, String> {
        let allow = allow
            .iter()
            .map(|a| {
                let a = a.trim();
                if let Some(net) = Net::parse(a) {
                    return Ok(Allow::Net(net));
                }
                let name = a.trim_end_matches('.').to_ascii_lowercase();
                let (wild, name) = match name.strip_prefix("*.") {
                    Some(rest) => (true, rest.to_string()),
                    None => (false, name),
                };
                let valid = !name.is_empty()
                    && !a.contains('/')
                    && name
                        .split('.')
                        .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
                if !valid {
                    return Err(format!(
                        "outbound.allow: {a:?} is neither an address, a range (10.0.0.0/8) nor a host name"
                    ));
                }
                Ok(if wild {
                    Allow::Domain(name)
                } else {
                    Allow::Host(name)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            allow,
            own: OnceLock::new(),
        })
    }

    /// Refuse the server's own address from now on.
    pub fn set_own_address(&self, addr: SocketAddr) {
        let _ = self.own.set(addr);
    }

    /// Whether `host`, resolved to `ip` (port `port`, 0 when unknown), is
    /// an allowed destination.
    pub fn check(&self, host: &str, ip: IpAddr, port: u16) -> Result<(), Refusal> {
        if let Some(own) = self.own.get()
            && port == own.port()
            && (ip.is_loopback() || own.ip().is_unspecified() || unmap(ip) == unmap(own.ip()))
        {
            return Err(Refusal::OwnAddress { host: host.into() });
        }
        if reserved(ip).is_none() || self.allowed(host, ip) {
            Ok(())
        } else {
            Err(Refusal::Denied { host: host.into() })
        }
    }

    fn allowed(&self, host: &str, ip: IpAddr) -> bool {
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow.iter().any(|a| match a {
            Allow::Net(n) => n.contains(ip),
            Allow::Host(h) => *h == name,
            Allow::Domain(d) => name
                .strip_suffix(d.as_str())
                .is_some_and(|rest| rest.ends_with('.')),
        })
    }

    /// Resolve `host` and keep the addresses the policy allows; refused
    /// when none is left. This is what every connection uses.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let all = lookup(host, port).await?;
        let allowed: Vec<SocketAddr> = all
            .iter()
            .filter(|a| self.check(host, a.ip(), port).is_ok())
            .copied()
            .collect();
        if allowed.is_empty() {
            // Say why with the first address's refusal.
            let first = all.first().map(|a| self.check(host, a.ip(), port));
            return Err(match first {
                Some(Err(r)) => r,
                _ => Refusal::Unresolvable { host: host.into() },
            });
        }
        Ok(allowed)
    }

    /// What the HTTP client's resolver cannot check, before a request to
    /// `host:port`: an address written in the URL (it never reaches the
    /// resolver) and the server's own port (the resolver does not know
    /// the port). A name on another port is left to the resolver, so it is
    /// looked up once, on connect.
    pub async fn before_connect(&self, host: &str, port: u16) -> Result<(), Refusal> {
        let literal = host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok();
        let own_port = self.own.get().is_some_and(|own| own.port() == port);
        if literal || own_port {
            self.resolve(host, port).await?;
        }
        Ok(())
    }

    /// The configuration-time check: every address `host` resolves to must
    /// be allowed (a name that mixes public and private answers is
    /// refused outright).
    pub async fn check_destination(&self, host: &str, port: u16) -> Result<(), Refusal> {
        for a in lookup(host, port).await? {
            self.check(host, a.ip(), port)?;
        }
        Ok(())
    }

    /// A resolver for the HTTP client that applies this policy to every
    /// name it connects to.
    pub fn resolver(self: &Arc<Self>) -> Arc<Guarded> {
        Arc::new(Guarded(self.clone()))
    }
}

/// The addresses of `host` (an address is itself).
async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let unresolvable = || Refusal::Unresolvable { host: host.into() };
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| unresolvable())?
        .map_err(|_| unresolvable())?;
    let all: Vec<SocketAddr> = found.collect();
    if all.is_empty() {
        return Err(unresolvable());
    }
    Ok(all)
}

/// The policy as reqwest's resolver: names resolve only to allowed
/// addresses.
pub struct Guarded(Arc<Policy>);

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // reqwest puts the URL's port on the addresses itself; the
            // own-address check runs on the URL before the request.
            let addrs = policy.resolve(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The refusal somewhere in `e`'s chain of sources, if that is why it
/// failed.
pub fn refusal_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refusal>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reserved_ranges_of_both_families_are_refused_and_public_ones_are_not() {
        for bad in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(reserved(ip(bad)).is_some(), "{bad} should be reserved");
        }
        for good in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "192.169.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "2002:101:101::",
        ] {
            assert_eq!(reserved(ip(good)), None, "{good} should be public");
        }
    }

    #[test]
    fn the_allow_list_opens_addresses_ranges_hosts_and_domains_only() {
        let p = Policy::new(&[
            "127.0.0.1".into(),
            "10.0.0.0/8".into(),
            "[::1]".into(),
            "Hooks.Internal.Example.".into(),
            "*.corp.example".into(),
        ])
        .unwrap();
        assert!(p.check("127.0.0.1", ip("127.0.0.1"), 80).is_ok());
        assert!(p.check("x", ip("127.0.0.2"), 80).is_err());
        assert!(p.check("x", ip("10.200.0.1"), 80).is_ok());
        assert!(p.check("x", ip("11.0.0.1"), 80).is_ok(), "public");
        assert!(p.check("x", ip("192.168.0.1"), 80).is_err());
        assert!(p.check("::1", ip("::1"), 80).is_ok());
        assert!(
            p.check("hooks.internal.example", ip("192.168.0.1"), 80)
                .is_ok()
        );
        assert!(p.check("a.b.corp.example", ip("192.168.0.1"), 80).is_ok());
        assert!(p.check("corp.example", ip("192.168.0.1"), 80).is_err());
        assert!(p.check("evilcorp.example", ip("192.168.0.1"), 80).is_err());
        for bad in ["10.0.0.0/33", "http://x", "a..b", "", "*."] {
            assert!(
                Policy::new(&[bad.into()]).is_err(),
                "{bad:?} is not an entry"
            );
        }
    }

    #[test]
    fn the_servers_own_port_is_refused_even_when_loopback_is_allowed() {
        let p = Policy::new(&["127.0.0.0/8".into(), "::1".into()]).unwrap();
        p.set_own_address("127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            p.check("localhost", ip("127.0.0.1"), 8080),
            Err(Refusal::OwnAddress {
                host: "localhost".into()
            })
        );
        assert!(p.check("x", ip("::1"), 8080).is_err());
        assert!(p.check("x", ip("127.0.0.1"), 8081).is_ok());
    }

    #[tokio::test]
    async fn a_name_is_checked_on_what_it_resolves_to() {
        let p = Policy::new(&[]).unwrap();
        // `localhost` resolves (from the hosts file) to loopback.
        let r = p.resolve("localhost", 80).await;
        assert!(
            matches!(r, Err(Refusal::Denied { .. })),
            "localhost is loopback: {r:?}"
        );
        assert!(p.check_destination("localhost", 80).await.is_err());
        let r = p.resolve("no-such-host.invalid", 80).await;
        assert!(matches!(r, Err(Refusal::Unresolvable { .. })), "{r:?}");
        let open = Policy::new(&["localhost".into()]).unwrap();
        assert!(!open.resolve("localhost", 80).await.unwrap().is_empty());
        assert!(open.check_destination("localhost", 80).await.is_ok());
    }
}
