//! The SSRF guard: the one place that decides which addresses egress may connect to.
//!
//! Refused unless a connection's `allow_private` lists a range holding the address: loopback,
//! private (RFC 1918, fc00::/7), link-local, CGNAT (100.64.0.0/10), unspecified, multicast,
//! broadcast, documentation, benchmarking and other reserved ranges, and IPv6 addresses that
//! embed a refused IPv4 address (IPv4-mapped and -translated, NAT64 64:ff9b::/96, 6to4
//! 2002::/16, Teredo 2001::/32 server and client); IPv4-compatible (::/96) and local-use NAT64
//! addresses are refused outright. Cloud metadata addresses are refused even when a listed
//! range holds them.
//!
//! Host names are checked after resolution, in the connection's DNS resolver
//! ([`crate::resolve`]), so the address checked is the address connected to; literal IP hosts
//! never reach a resolver and are checked here, before a request and on every redirect hop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

/// Metadata services of cloud providers (AWS, GCP, Azure, OpenStack; AWS over IPv6; Alibaba;
/// Oracle): refused whatever `allow_private` says.
const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(192, 0, 0, 192),
];
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)];

/// IPv4 ranges refused by default: (network, prefix length, why).
const REFUSED_V4: [([u8; 4], u8, &str); 16] = [
    ([0, 0, 0, 0], 8, "unspecified or this-network address"),
    ([127, 0, 0, 0], 8, "loopback address"),
    ([10, 0, 0, 0], 8, "private address"),
    ([172, 16, 0, 0], 12, "private address"),
    ([192, 168, 0, 0], 16, "private address"),
    ([169, 254, 0, 0], 16, "link-local address"),
    ([100, 64, 0, 0], 10, "shared (CGNAT) address"),
    ([192, 0, 0, 0], 24, "IETF protocol assignment"),
    ([192, 0, 2, 0], 24, "documentation address"),
    ([198, 51, 100, 0], 24, "documentation address"),
    ([203, 0, 113, 0], 24, "documentation address"),
    ([198, 18, 0, 0], 15, "benchmarking address"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast address"),
    ([224, 0, 0, 0], 4, "multicast address"),
    ([255, 255, 255, 255], 32, "broadcast address"),
    ([240, 0, 0, 0], 4, "reserved address"),
];

/// IPv6 ranges refused by default, besides embedded IPv4 forms: (network, prefix length, why).
const REFUSED_V6: [([u16; 8], u8, &str); 14] = [
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified address"),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback address"),
    (
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        "IPv4-compatible address (deprecated)",
    ),
    (
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use NAT64 address",
    ),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only address"),
    ([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking address"),
    (
        [0x2001, 0x10, 0, 0, 0, 0, 0, 0],
        28,
        "reserved (ORCHID) address",
    ),
    (
        [0x2001, 0x20, 0, 0, 0, 0, 0, 0],
        28,
        "reserved (ORCHIDv2) address",
    ),
    (
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation address",
    ),
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation address"),
    (
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        "unique local (private) address",
    ),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local address"),
    (
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "site-local address (deprecated)",
    ),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast address"),
];

/// Why an address is refused; never holds the address of a `query` URL or anything secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("destination refused by the SSRF guard: {reason}")]
pub struct Refusal {
    pub reason: &'static str,
}

/// The guard of one connection: the default refusals minus its `allow_private` ranges.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow: Vec<IpNet>,
}

impl Guard {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Whether the connection may connect to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        if is_metadata(ip) {
            return Err(Refusal {
                reason: "cloud metadata address",
            });
        }
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        if self
            .allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            return Ok(());
        }
        match refusal(ip) {
            Some(reason) => Err(Refusal { reason }),
            None => Ok(()),
        }
    }

    /// Whether the connection may send to `url`: its host when that is an IP literal (names
    /// are checked by the resolver once resolved).
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(Host::Domain(_)) => Ok(()),
            None => Err(Refusal {
                reason: "URL without a host",
            }),
        }
    }
}

/// Why `ip` is refused by default, or `None` when it is a public address.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    REFUSED_V4.iter().find_map(|(net, len, reason)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
        (bits & mask == u32::from_be_bytes(*net) & mask).then_some(*reason)
    })
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    let direct = REFUSED_V6.iter().find_map(|(net, len, reason)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
        (bits & mask == u128::from(Ipv6Addr::from(*net)) & mask).then_some(*reason)
    });
    direct.or_else(|| embedded_v4(ip).into_iter().find_map(refusal_v4))
}

/// IPv4 addresses an IPv6 address carries and that traffic to it may reach.
fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        // IPv4-mapped ::ffff:a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d, IPv4-compatible ::a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, hi, lo]
        | [0, 0, 0, 0, 0xffff, 0, hi, lo]
        | [0, 0, 0, 0, 0, 0, hi, lo] => {
            vec![v4(hi, lo)]
        }
        // NAT64 well-known prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => vec![v4(hi, lo)],
        // 6to4: 2002:AABB:CCDD::/48.
        [0x2002, hi, lo, ..] => vec![v4(hi, lo)],
        // Teredo: 2001:0:<server>:<flags>:<port>:<client XOR ffff:ffff>.
        [0x2001, 0, server_hi, server_lo, _, _, client_hi, client_lo] => {
            vec![v4(server_hi, server_lo), v4(!client_hi, !client_lo)]
        }
        _ => Vec::new(),
    }
}

fn is_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => METADATA_V4.contains(&v4),
        IpAddr::V6(v6) => {
            METADATA_V6.contains(&v6) || embedded_v4(v6).iter().any(|v4| METADATA_V4.contains(v4))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Addresses refused by default: one or more per class, and the embedded forms.
    pub(crate) const REFUSED: &[&str] = &[
        "0.0.0.0",
        "0.1.2.3",
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.255",
        "100.100.100.200",
        "192.0.0.192",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.9",
        "198.18.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "::",
        "::1",
        "::127.0.0.1",
        "::8.8.8.8",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:0:192.168.0.1",
        "64:ff9b::127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::1",
        "2002:7f00:0001::1",
        "2002:a9fe:a9fe::1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "2001:0:7f00:1::1",
        "fc00::1",
        "fd00:ec2::254",
        "fd12:3456::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "ff02::1",
        "ff0e::1",
        "2001:db8::1",
        "3fff::1",
        "100::1",
    ];

    const PUBLIC: &[&str] = &[
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "172.32.0.1",
        "100.128.0.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:0808:0808::1",
    ];

    fn ip(text: &str) -> IpAddr {
        text.parse().expect(text)
    }

    #[test]
    fn the_table_is_refused_by_default() {
        let guard = Guard::default();
        for text in REFUSED {
            assert!(guard.check_ip(ip(text)).is_err(), "{text} not refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let guard = Guard::default();
        for text in PUBLIC {
            assert_eq!(guard.check_ip(ip(text)), Ok(()), "{text}");
        }
    }

    #[test]
    fn an_allowed_range_lets_its_addresses_through_and_only_them() {
        let guard = Guard::new(vec![
            "127.0.0.0/8".parse().expect("net"),
            "fd12::/16".parse().expect("net"),
        ]);
        for text in ["127.0.0.1", "::ffff:127.0.0.1", "fd12:3456::1"] {
            assert_eq!(guard.check_ip(ip(text)), Ok(()), "{text}");
        }
        for text in ["10.0.0.1", "::1", "fd00:ec2::254", "169.254.169.254"] {
            assert!(guard.check_ip(ip(text)).is_err(), "{text}");
        }
    }

    #[test]
    fn metadata_addresses_are_refused_even_when_allowed() {
        let guard = Guard::new(vec![
            "0.0.0.0/0".parse().expect("net"),
            "::/0".parse().expect("net"),
        ]);
        for text in [
            "169.254.169.254",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "100.100.100.200",
        ] {
            assert!(guard.check_ip(ip(text)).is_err(), "{text}");
        }
        assert_eq!(guard.check_ip(ip("10.0.0.1")), Ok(()));
    }

    #[test]
    fn literal_hosts_are_checked_and_names_left_to_the_resolver() {
        let guard = Guard::default();
        for url in [
            "http://127.0.0.1/",
            "http://[::1]:8080/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::ffff:a9fe:a9fe]/",
        ] {
            let url = Url::parse(url).expect(url);
            assert!(guard.check_url(&url).is_err(), "{url}");
        }
        let named = Url::parse("https://api.example.com/").expect("url");
        assert_eq!(guard.check_url(&named), Ok(()));
    }
}
