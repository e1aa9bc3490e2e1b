//! Settings that guard a source's endpoint before its body is read: who may send (auth kinds,
//! address lists), how often (rate limit), and what (media types, read timeout). Their checks
//! for `hookyard validate` live here too, so every rule about them is in one place.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use super::{Problem, Secret, Source, SourceAuth};

/// A token bucket per source: `per_second` tokens are added every second, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests accepted per second, sustained (at least 1).
    pub per_second: u32,
    /// Requests accepted at once after a quiet period (default `per_second`).
    pub burst: Option<u32>,
}

impl RateLimit {
    /// The bucket size: `burst`, or `per_second` when it is not set.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.per_second)
    }
}

/// Parses a CIDR block (`10.0.0.0/8`, `2001:db8::/32`) or a single address (a block of one).
/// Host bits are cleared, so `10.1.2.3/8` is `10.0.0.0/8`.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address));
    }
    text.parse::<IpNet>()
        .map(|net| net.trunc())
        .map_err(|_| format!("{text:?} is not an address or CIDR block like 10.0.0.0/8"))
}

impl SourceAuth {
    /// The accepted passwords of `basic` and `query_basic`: `password` and `passwords`.
    pub fn passwords(&self) -> impl Iterator<Item = &Secret> {
        let (one, many): (&Option<Secret>, &[Secret]) = match self {
            Self::Basic {
                password,
                passwords,
                ..
            }
            | Self::QueryBasic {
                password,
                passwords,
                ..
            } => (password, passwords),
            Self::None | Self::ApiKey { .. } => (&None, &[]),
        };
        one.iter().chain(many)
    }

    /// Every secret of the auth settings with its key below the source (`auth.passwords[1]`),
    /// for resolving them.
    pub fn secrets_mut(&mut self) -> Vec<(String, &mut Secret)> {
        let mut out = Vec::new();
        match self {
            Self::None => {}
            Self::Basic {
                password,
                passwords,
                ..
            }
            | Self::QueryBasic {
                password,
                passwords,
                ..
            } => {
                if let Some(password) = password {
                    out.push(("auth.password".to_owned(), password));
                }
                for (n, secret) in passwords.iter_mut().enumerate() {
                    out.push((format!("auth.passwords[{n}]"), secret));
                }
            }
            Self::ApiKey { keys, .. } => {
                for (n, secret) in keys.iter_mut().enumerate() {
                    out.push((format!("auth.keys[{n}]"), secret));
                }
            }
        }
        out
    }
}

/// Checks a source's inbound settings; `key` is `sources.NAME`.
pub(super) fn check(problems: &mut Vec<Problem>, key: &str, source: &Source) {
    let mut push = |field: String, message: String| {
        problems.push(Problem {
            key: format!("{key}.{field}"),
            message,
            line: None,
        });
    };
    check_auth(&mut push, &source.auth);
    check_address_lists(&mut push, source);
    if let Some(limit) = &source.rate_limit {
        check_rate_limit(&mut push, limit);
    }
    for (n, media_type) in source.content_types.iter().enumerate() {
        if !is_media_type(media_type) {
            push(
                format!("content_types[{n}]"),
                "must be a media type like application/json, without parameters".into(),
            );
        }
    }
    if source.read_timeout.is_zero() {
        push("read_timeout".into(), "must be greater than 0".into());
    }
}

/// Checks that each auth kind has what it needs to tell a caller apart: a credential to
/// compare, and a non-empty place to find it in the request.
fn check_auth(push: &mut impl FnMut(String, String), auth: &SourceAuth) {
    match auth {
        SourceAuth::None => {}
        SourceAuth::Basic {
            password,
            passwords,
            ..
        } => check_passwords(push, password, passwords),
        SourceAuth::QueryBasic {
            param,
            username,
            password,
            passwords,
        } => {
            if param.is_empty() {
                push("auth.param".into(), "must not be empty".into());
            }
            if username.is_empty() || username.contains(':') {
                push(
                    "auth.username".into(),
                    "must be non-empty and contain no ':'".into(),
                );
            }
            check_passwords(push, password, passwords);
        }
        SourceAuth::ApiKey {
            header,
            query,
            keys,
        } => check_api_key(push, header.as_deref(), query.as_deref(), keys),
    }
}

/// An API key is read from exactly one place, a header or a query parameter, so the two are
/// never combined or left both unset.
fn check_api_key(
    push: &mut impl FnMut(String, String),
    header: Option<&str>,
    query: Option<&str>,
    keys: &[Secret],
) {
    match (header, query) {
        (Some(_), Some(_)) | (None, None) => {
            push("auth".into(), "set exactly one of header and query".into())
        }
        (Some(name), None) if http::HeaderName::from_bytes(name.as_bytes()).is_err() => {
            push(
                "auth.header".into(),
                "must be a non-empty, valid HTTP header name".into(),
            );
        }
        (None, Some("")) => {
            push("auth.query".into(), "must not be empty".into());
        }
        _ => {}
    }
    if keys.is_empty() {
        push("auth.keys".into(), "must list at least one key".into());
    }
}

/// Every entry of `allow_ips` and `trusted_proxies` must be an address or a CIDR block, so
/// the ingress never meets an entry it cannot apply.
fn check_address_lists(push: &mut impl FnMut(String, String), source: &Source) {
    for (field, list) in [
        ("allow_ips", &source.allow_ips),
        ("trusted_proxies", &source.trusted_proxies),
    ] {
        for (n, text) in list.iter().enumerate() {
            if let Err(message) = parse_cidr(text) {
                push(format!("{field}[{n}]"), message);
            }
        }
    }
}

/// A bucket that never fills (a zero rate or size) would refuse every request.
fn check_rate_limit(push: &mut impl FnMut(String, String), limit: &RateLimit) {
    if limit.per_second == 0 {
        push("rate_limit.per_second".into(), "must be at least 1".into());
    }
    if limit.burst == Some(0) {
        push("rate_limit.burst".into(), "must be at least 1".into());
    }
}

fn check_passwords(
    push: &mut impl FnMut(String, String),
    password: &Option<Secret>,
    passwords: &[Secret],
) {
    match (password, passwords.is_empty()) {
        (Some(_), false) => push(
            "auth.passwords".into(),
            "set either password or passwords, not both".into(),
        ),
        (None, true) => push(
            "auth.password".into(),
            "set password or a non-empty passwords list".into(),
        ),
        _ => {}
    }
}

/// `type/subtype`, both non-empty HTTP tokens (RFC 9110 §8.3.1), nothing else.
fn is_media_type(text: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    text.split_once('/')
        .is_some_and(|(kind, sub)| token(kind) && token(sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks_and_single_addresses_parse() {
        let net = |t: &str| parse_cidr(t).map(|n| n.to_string());
        assert_eq!(net("10.0.0.0/8"), Ok("10.0.0.0/8".into()));
        assert_eq!(net(" 10.1.2.3/8 "), Ok("10.0.0.0/8".into()));
        assert_eq!(net("203.0.113.7"), Ok("203.0.113.7/32".into()));
        assert_eq!(net("2001:db8::/32"), Ok("2001:db8::/32".into()));
        assert_eq!(net("::1"), Ok("::1/128".into()));
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0/8",
            "host",
            "::/129",
            "1.2.3.4/-1",
            "/8",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn media_types_have_a_type_and_a_subtype_only() {
        assert!(is_media_type("application/json"));
        assert!(is_media_type("application/vnd.api+json"));
        for bad in [
            "",
            "json",
            "/json",
            "application/",
            "application/json; charset=utf-8",
        ] {
            assert!(!is_media_type(bad), "{bad:?}");
        }
    }

    #[test]
    fn burst_defaults_to_the_rate() {
        let limit = |burst| RateLimit {
            per_second: 5,
            burst,
        };
        assert_eq!(limit(None).burst(), 5);
        assert_eq!(limit(Some(9)).burst(), 9);
    }

    fn problem_keys(text: &str) -> Vec<String> {
        let env = |name: &str| (name != "UNSET").then(|| format!("v-{name}"));
        match crate::Integration::parse(text, &env) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems().iter().map(|p| p.key.clone()).collect(),
        }
    }

    #[test]
    fn every_inbound_option_loads_and_resolves_its_secrets() {
        let text = r#"
            [sources.a]
            path = "/a"
            auth = { type = "basic", username = "u", passwords = ["${env:P1}", "${env:P2}"] }
            allow_ips = ["203.0.113.0/24", "2001:db8::/32", "192.0.2.7"]
            trusted_proxies = ["10.0.0.0/8"]
            rate_limit = { per_second = 50, burst = 100 }
            content_types = ["application/json"]
            read_timeout = "3s"
            [sources.b]
            path = "/b"
            auth = { type = "query_basic", param = "boomi_auth", username = "boomi", password = "${env:P3}" }
            [sources.c]
            path = "/c"
            auth = { type = "api_key", header = "X-Api-Key", keys = ["${env:K1}"] }
            [sources.d]
            path = "/d"
            auth = { type = "api_key", query = "api_key", keys = ["${env:K2}", "${env:K3}"] }
        "#;
        let i =
            crate::Integration::parse(text, &|n: &str| Some(format!("v-{n}"))).expect("valid file");
        let a = &i.sources["a"];
        let passwords: Vec<_> = a.auth.passwords().map(Secret::expose).collect();
        assert_eq!(passwords, ["v-P1", "v-P2"]);
        assert_eq!(a.rate_limit.map(|r| r.burst()), Some(100));
        assert_eq!(a.read_timeout, std::time::Duration::from_secs(3));
        assert_eq!(
            i.sources["b"].read_timeout,
            std::time::Duration::from_secs(10)
        );
        let SourceAuth::ApiKey { keys, .. } = &i.sources["d"].auth else {
            panic!("api_key")
        };
        assert_eq!(keys[1].expose(), "v-K3");
    }

    #[test]
    fn problems_name_the_inbound_key() {
        let cases = [
            (
                r#"auth = { type = "basic", username = "u" }"#,
                "sources.a.auth.password",
            ),
            (
                r#"auth = { type = "basic", username = "u", password = "${env:P}", passwords = ["${env:P}"] }"#,
                "sources.a.auth.passwords",
            ),
            (
                r#"auth = { type = "basic", username = "u", passwords = ["${env:P}", "${env:UNSET}"] }"#,
                "sources.a.auth.passwords[1]",
            ),
            (
                r#"auth = { type = "query_basic", param = "", username = "u", password = "${env:P}" }"#,
                "sources.a.auth.param",
            ),
            (
                r#"auth = { type = "query_basic", param = "p", username = "u:v", password = "${env:P}" }"#,
                "sources.a.auth.username",
            ),
            (
                r#"auth = { type = "api_key", header = "X", query = "k", keys = ["${env:K}"] }"#,
                "sources.a.auth",
            ),
            (
                r#"auth = { type = "api_key", keys = ["${env:K}"] }"#,
                "sources.a.auth",
            ),
            (
                r#"auth = { type = "api_key", header = "bad header", keys = ["${env:K}"] }"#,
                "sources.a.auth.header",
            ),
            (
                r#"auth = { type = "api_key", query = "k", keys = [] }"#,
                "sources.a.auth.keys",
            ),
            (
                r#"allow_ips = ["10.0.0.0/8", "10.0.0.0/40"]"#,
                "sources.a.allow_ips[1]",
            ),
            (
                r#"trusted_proxies = ["proxy"]"#,
                "sources.a.trusted_proxies[0]",
            ),
            (
                "rate_limit = { per_second = 0 }",
                "sources.a.rate_limit.per_second",
            ),
            (
                "rate_limit = { per_second = 1, burst = 0 }",
                "sources.a.rate_limit.burst",
            ),
            (
                r#"content_types = ["application/json; charset=utf-8"]"#,
                "sources.a.content_types[0]",
            ),
            (r#"read_timeout = "0s""#, "sources.a.read_timeout"),
        ];
        for (line, key) in cases {
            let text = format!("[sources.a]\npath = \"/a\"\n{line}\n");
            assert_eq!(problem_keys(&text), [key], "{line}");
        }
    }
}
