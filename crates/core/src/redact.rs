//! What an operator may see of a stored request: header values and query parameters that can
//! carry a credential are replaced by [`REDACTED`]. One set of rules for every place that shows
//! stored events (the admin API, the CLI, the console) and egress's audit of partner URLs.
//!
//! Names are judged by what they look like (authorization, cookies, tokens, keys, secrets,
//! signatures, sessions) plus the names an integration file declares for a source's own
//! credentials (its API-key header or parameter, its signature header), so a sender's custom
//! header is covered too. Over-redacting a harmless value is the cheaper mistake.

use crate::config::{Signature, Source, SourceAuth};

/// Put in place of a redacted value.
pub const REDACTED: &str = "REDACTED";

/// Parts of query parameter names (lower case) whose values are redacted.
const QUERY_PARTS: [&str; 14] = [
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "auth",
    "sig",
    "session",
    "credential",
    "code",
    "jwt",
    "assertion",
    "signature",
];

/// Parts of header names (lower case) whose values are redacted.
const HEADER_PARTS: [&str; 12] = [
    "auth",
    "cookie",
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "session",
    "credential",
    "hmac",
    "jwt",
    "key",
];

/// Headers that contain a listed part but carry no credential, kept for operators.
const HEADER_KEEP: [&str; 2] = ["idempotency-key", "x-idempotency-key"];

/// Whether a query parameter named `name` may carry a credential.
pub fn is_secret_query_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    QUERY_PARTS.iter().any(|part| lower.contains(part))
}

/// Whether a header named `name` may carry a credential.
pub fn is_secret_header_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if HEADER_KEEP.contains(&lower.as_str()) {
        return false;
    }
    // `-sig`/`_sig` catches short signature names (`Paypal-Transmission-Sig`) without
    // redacting every header that merely contains the letters.
    HEADER_PARTS.iter().any(|part| lower.contains(part))
        || lower.ends_with("-sig")
        || lower.ends_with("_sig")
}

/// Whether the value of a partner's response header named `name` is hidden when an answer is
/// shown to an operator (`hookyard connection test`, the console's test request): cookies and
/// any header whose name mentions a token, key, secret, session or auth.
pub fn is_secret_response_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["token", "key", "secret", "auth", "session", "cookie"]
        .iter()
        .any(|part| name.contains(part))
}

/// The header and query names a source's configuration declares for its credentials.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    headers: Vec<String>,
    params: Vec<String>,
}

impl Declared {
    /// The names `source` declares: its API-key header or parameter, its query credential
    /// parameter, its signature, timestamp-free header.
    pub fn of(source: &Source) -> Self {
        let mut declared = Self::default();
        match &source.auth {
            SourceAuth::ApiKey { header, query, .. } => {
                declared.headers.extend(header.iter().cloned());
                declared.params.extend(query.iter().cloned());
            }
            SourceAuth::QueryBasic { param, .. } => declared.params.push(param.clone()),
            SourceAuth::None | SourceAuth::Basic { .. } => {}
        }
        if let Some(Signature::Hmac(hmac)) = &source.signature {
            declared.headers.push(hmac.header.clone());
        }
        declared
    }

    fn header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    fn param(&self, name: &str) -> bool {
        self.params.iter().any(|p| p.eq_ignore_ascii_case(name))
    }
}

/// A header value as shown: `(value, redacted)`; the value is lossy UTF-8 of the bytes.
pub fn header(name: &str, value: &[u8], declared: &Declared) -> (String, bool) {
    if is_secret_header_name(name) || declared.header(name) {
        (REDACTED.to_owned(), true)
    } else {
        (String::from_utf8_lossy(value).into_owned(), false)
    }
}

/// A raw query string (without `?`) with the values of secret-looking or declared parameters
/// replaced; the rest is kept byte for byte, so what is shown is what was sent.
pub fn query(query: &str, declared: &Declared) -> String {
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_decoded(name);
            if !value.is_empty() && (is_secret_query_name(&decoded) || declared.param(&decoded)) {
                format!("{name}={REDACTED}")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `name` with `+` and `%XX` decoded, so an encoded name (`api%5Fkey`) is judged like the plain one.
fn percent_decoded(name: &str) -> String {
    url::form_urlencoded::parse(format!("{name}=").as_bytes())
        .next()
        .map(|(n, _)| n.into_owned())
        .unwrap_or_else(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_headers_that_can_carry_credentials_are_secret() {
        for name in ["Set-Cookie", "X-Auth-Token", "X-Api-Key", "X-Session-Id"] {
            assert!(is_secret_response_header(name), "{name}");
        }
        for name in ["Content-Type", "X-Request-Id", "Location"] {
            assert!(!is_secret_response_header(name), "{name}");
        }
    }

    #[test]
    fn credential_headers_are_redacted_and_others_kept() {
        let none = Declared::default();
        for secret in [
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "Set-Cookie",
            "X-Api-Key",
            "X-Gitlab-Token",
            "Stripe-Signature",
            "X-Hub-Signature-256",
            "X-Shopify-Hmac-Sha256",
            "Paypal-Transmission-Sig",
            "Ocp-Apim-Subscription-Key",
            "X-Session-Id",
        ] {
            assert_eq!(
                header(secret, b"v", &none),
                (REDACTED.to_owned(), true),
                "{secret}"
            );
        }
        for kept in [
            "Content-Type",
            "X-Shop-Topic",
            "Idempotency-Key",
            "User-Agent",
        ] {
            assert_eq!(header(kept, b"v", &none), ("v".to_owned(), false), "{kept}");
        }
        assert_eq!(header("X-Raw", &[0xff, b'a'], &none).0, "\u{fffd}a");
    }

    #[test]
    fn declared_names_are_redacted_whatever_they_look_like() {
        let declared = Declared {
            headers: vec!["X-Partner".to_owned()],
            params: vec!["p".to_owned()],
        };
        assert!(header("x-partner", b"v", &declared).1);
        assert_eq!(query("p=1&q=2", &declared), "p=REDACTED&q=2");
    }

    #[test]
    fn secret_query_values_are_redacted_and_the_rest_kept_as_sent() {
        let none = Declared::default();
        assert_eq!(
            query(
                "page=2&access_token=t1&api%5Fkey=k&sig=s&flag&x=%20y",
                &none
            ),
            "page=2&access_token=REDACTED&api%5Fkey=REDACTED&sig=REDACTED&flag&x=%20y"
        );
        assert_eq!(query("", &none), "");
        assert_eq!(query("token=", &none), "token=");
    }
}
