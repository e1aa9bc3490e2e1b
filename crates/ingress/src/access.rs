//! Who may reach a source at all: the client address (from the peer, or from
//! `X-Forwarded-For` when the peer is a trusted proxy) checked against `allow_ips`, and the
//! start-up check of every inbound setting that cannot be refused per request.
//!
//! `X-Forwarded-For` is read right to left: each proxy appends the address it received the
//! request from, so only entries added by trusted proxies can be believed. The client is the
//! right-most entry that is not a trusted proxy; anything to its left was written by the
//! client and is ignored. A header that cannot be read (not an address, too many hops) leaves
//! the client unknown, and an unknown client is refused whenever `allow_ips` is set.

use std::net::{IpAddr, SocketAddr};

use hookyard_core::config::{Source, SourceAuth, parse_cidr};
use http::HeaderMap;
use ipnet::IpNet;

/// Most `X-Forwarded-For` entries looked at; a longer chain of trusted proxies is unreadable
/// rather than work proportional to what a sender wrote.
const MAX_HOPS: usize = 32;

/// An inbound setting ingress cannot serve with, found at start. Names the setting, never a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// An `allow_ips` or `trusted_proxies` entry that is not a CIDR block or address.
    #[error("{field}[{index}] is not a CIDR block")]
    Cidr {
        /// `allow_ips` or `trusted_proxies`.
        field: &'static str,
        /// Position in the list.
        index: usize,
    },
    /// A password or key that is empty (for instance never resolved), or none at all.
    #[error("auth has an empty or missing {0}")]
    EmptySecret(&'static str),
    /// An `api_key` header name that is not one, or a query parameter name that is empty.
    #[error("auth names an invalid header or query parameter")]
    BadName,
    /// A rate limit of zero requests.
    #[error("rate_limit must allow at least one request")]
    ZeroRate,
}

/// Checks once, at start, what would otherwise fail or be meaningless per request.
pub(crate) fn check(source: &Source) -> Result<(), SetupError> {
    cidrs("allow_ips", &source.allow_ips)?;
    cidrs("trusted_proxies", &source.trusted_proxies)?;
    match &source.auth {
        SourceAuth::None => {}
        SourceAuth::Basic { .. } | SourceAuth::QueryBasic { .. } => {
            if source.auth.passwords().next().is_none()
                || source.auth.passwords().any(|p| p.expose().is_empty())
            {
                return Err(SetupError::EmptySecret("password"));
            }
            if matches!(&source.auth, SourceAuth::QueryBasic { param, .. } if param.is_empty()) {
                return Err(SetupError::BadName);
            }
        }
        SourceAuth::ApiKey {
            header,
            query,
            keys,
        } => {
            if keys.is_empty() || keys.iter().any(|k| k.expose().is_empty()) {
                return Err(SetupError::EmptySecret("key"));
            }
            let named = match (header, query) {
                (Some(h), None) => http::HeaderName::from_bytes(h.as_bytes()).is_ok(),
                (None, Some(q)) => !q.is_empty(),
                _ => false,
            };
            if !named {
                return Err(SetupError::BadName);
            }
        }
    }
    if source
        .rate_limit
        .is_some_and(|r| r.per_second == 0 || r.burst() == 0)
    {
        return Err(SetupError::ZeroRate);
    }
    Ok(())
}

fn cidrs(field: &'static str, texts: &[String]) -> Result<Vec<IpNet>, SetupError> {
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| parse_cidr(text).map_err(|_| SetupError::Cidr { field, index }))
        .collect()
}

/// A source's address rules, prepared once at start.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientFilter {
    /// Empty: every address may send.
    allow: Vec<IpNet>,
    trusted: Vec<IpNet>,
}

impl ClientFilter {
    pub(crate) fn new(source: &Source) -> Result<Self, SetupError> {
        Ok(Self {
            allow: cidrs("allow_ips", &source.allow_ips)?,
            trusted: cidrs("trusted_proxies", &source.trusted_proxies)?,
        })
    }

    /// Whether the request may go on. With `allow_ips` unset, always; else only when the client
    /// address is known and inside one of the blocks.
    pub(crate) fn allows(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
        if self.allow.is_empty() {
            return true;
        }
        self.client(peer, headers)
            .is_some_and(|ip| self.allow.iter().any(|net| net.contains(&ip)))
    }

    /// The client's address: the peer, or when the peer is a trusted proxy the right-most
    /// `X-Forwarded-For` entry that is not one. `None` when it cannot be told.
    pub(crate) fn client(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.ip().to_canonical();
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let mut client = peer;
        // Header lines are in the order received, and each line lists hops left to right.
        let values: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let hops = values
            .iter()
            .rev()
            .flat_map(|v| v.rsplit(|b| *b == b','))
            .map(|entry| entry.trim_ascii())
            // Empty list elements are allowed by RFC 9110 §5.6.1.
            .filter(|entry| !entry.is_empty());
        for (n, entry) in hops.enumerate() {
            if n == MAX_HOPS {
                return None;
            }
            let ip = parse_hop(entry)?;
            if !self.is_trusted(ip) {
                return Some(ip);
            }
            client = ip;
        }
        // Every hop is a trusted proxy: the left-most is as close to the client as is known.
        Some(client)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(entry: &[u8]) -> Option<IpAddr> {
    // The longest textual IPv6 address with a port is well under 64 bytes.
    if entry.len() > 64 {
        return None;
    }
    let text = std::str::from_utf8(entry).ok()?;
    let ip = text
        .parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookyard_core::config::{RateLimit, Secret, SecretRef};
    use http::HeaderValue;

    fn source(allow: &[&str], trusted: &[&str]) -> Source {
        let mut source: Source =
            serde_json::from_value(serde_json::json!({ "path": "/x" })).expect("minimal source");
        source.allow_ips = allow.iter().map(|s| (*s).to_owned()).collect();
        source.trusted_proxies = trusted.iter().map(|s| (*s).to_owned()).collect();
        source
    }

    fn filter(allow: &[&str], trusted: &[&str]) -> ClientFilter {
        ClientFilter::new(&source(allow, trusted)).expect("valid filter")
    }

    fn peer(text: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(text.parse().expect("ip"), 4000))
    }

    fn xff(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                "x-forwarded-for",
                HeaderValue::from_bytes(v).expect("header value"),
            );
        }
        h
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("ip"))
    }

    #[test]
    fn the_direct_peer_is_checked_against_allow_ips() {
        let none = HeaderMap::new();
        assert!(filter(&["127.0.0.0/8"], &[]).allows(peer("127.0.0.1"), &none));
        assert!(!filter(&["10.0.0.0/8"], &[]).allows(peer("127.0.0.1"), &none));
        assert!(filter(&[], &[]).allows(None, &none));
        assert!(!filter(&["0.0.0.0/0"], &[]).allows(None, &none));
        // An IPv4 peer seen through a dual-stack socket is still an IPv4 address.
        assert!(filter(&["127.0.0.0/8"], &[]).allows(peer("::ffff:127.0.0.1"), &none));
        assert!(filter(&["2001:db8::/32"], &[]).allows(peer("2001:db8::7"), &none));
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let f = filter(&[], &["10.0.0.0/8"]);
        let h = xff(&[b"198.51.100.9, 203.0.113.5, 10.0.0.2"]);
        assert_eq!(f.client(peer("10.0.0.1"), &h), ip("203.0.113.5"));
        // Spoofed by an untrusted peer: ignored.
        assert_eq!(f.client(peer("192.0.2.1"), &h), ip("192.0.2.1"));
        // Lines are concatenated in order.
        let h = xff(&[b"198.51.100.9", b"203.0.113.5:443,10.0.0.2"]);
        assert_eq!(f.client(peer("10.0.0.1"), &h), ip("203.0.113.5"));
        let h = xff(&[b"[2001:db8::1]:80, ,10.0.0.2"]);
        assert_eq!(f.client(peer("10.0.0.1"), &h), ip("2001:db8::1"));
        // Only proxies: the left-most one.
        let h = xff(&[b"10.0.0.3, 10.0.0.2"]);
        assert_eq!(f.client(peer("10.0.0.1"), &h), ip("10.0.0.3"));
        assert_eq!(
            f.client(peer("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn hostile_forwarded_for_leaves_the_client_unknown_without_panicking() {
        let f = filter(&["0.0.0.0/0", "::/0"], &["10.0.0.0/8"]);
        let p = peer("10.0.0.1");
        let huge = "10.0.0.2,".repeat(100_000);
        let long = format!("{}1.2.3.4", "9".repeat(1000));
        for bad in [
            b"not-an-ip".as_slice(),
            b"\xff\xfe",
            b"1.2.3.4.5",
            huge.as_bytes(),
            long.as_bytes(),
            b"[::1",
            b"1.2.3.4:99999",
        ] {
            assert!(
                !f.allows(p, &xff(&[bad])),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Garbage left of the client is never read.
        let h = xff(&[b"garbage, 203.0.113.5"]);
        assert_eq!(f.client(p, &h), ip("203.0.113.5"));
    }

    #[test]
    fn unusable_settings_are_refused_at_start() {
        let mut s = source(&["10.0.0.0/33"], &[]);
        assert_eq!(
            check(&s),
            Err(SetupError::Cidr {
                field: "allow_ips",
                index: 0
            })
        );
        s.allow_ips.clear();
        s.rate_limit = Some(RateLimit {
            per_second: 0,
            burst: None,
        });
        assert_eq!(check(&s), Err(SetupError::ZeroRate));
        s.rate_limit = None;
        s.auth = SourceAuth::ApiKey {
            header: Some("X-Api-Key".into()),
            query: None,
            keys: vec![Secret::from_value(SecretRef::Env("K".into()), "")],
        };
        assert_eq!(check(&s), Err(SetupError::EmptySecret("key")));
        s.auth = SourceAuth::ApiKey {
            header: Some("bad header".into()),
            query: None,
            keys: vec![Secret::from_value(SecretRef::Env("K".into()), "k")],
        };
        assert_eq!(check(&s), Err(SetupError::BadName));
        s.auth = SourceAuth::Basic {
            username: "u".into(),
            password: None,
            passwords: vec![],
        };
        assert_eq!(check(&s), Err(SetupError::EmptySecret("password")));
    }
}
