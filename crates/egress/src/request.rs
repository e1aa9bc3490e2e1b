//! Turns a `CallRequest` into a checked outbound request on its connection: the method, a URL
//! that stays on the connection's host, the caller's headers without anything that could
//! override the connection's credentials, and the connection's static auth.

use bytes::Bytes;
use hookyard_proto::egress::v1::CallRequest;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use secrecy::ExposeSecret;
use url::Url;

use crate::{
    Error,
    connection::{Auth, Connection},
};

/// Headers a caller may not set: credentials belong to the connection, and the rest describe
/// the connection or the message framing, which the HTTP client owns.
const RESERVED_HEADERS: [HeaderName; 11] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A request ready to send, except for a bearer token.
pub(crate) struct Outbound {
    pub method: Method,
    /// May hold a `query` connection's API key: never log or print it.
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Outbound {
    pub(crate) fn new(connection: &Connection, call: CallRequest) -> Result<Self, Error> {
        let method = method(&call.method)?;
        let mut url = join(&connection.base, &call.path)?;
        let mut headers = caller_headers(&call, &connection.auth)?;
        match &connection.auth {
            Auth::None | Auth::OAuth2 => {}
            Auth::Headers(fixed) => {
                for (name, value) in fixed {
                    headers.insert(name.clone(), value.clone());
                }
            }
            Auth::Query { name, value } => {
                if url.query_pairs().any(|(key, _)| key == name.as_str()) {
                    return Err(Error::ReservedQueryParameter(name.clone()));
                }
                url.query_pairs_mut()
                    .append_pair(name, value.expose_secret());
            }
        }
        Ok(Self {
            method,
            url,
            headers,
            body: Bytes::from(call.body),
        })
    }
}

fn method(text: &str) -> Result<Method, Error> {
    Ok(match text {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        "OPTIONS" => Method::OPTIONS,
        _ => return Err(Error::Method),
    })
}

/// Appends `path` (and its query) to the base URL's path; refuses anything that could change
/// the scheme, host, port or user info, leave the base URL's path, or add a query or fragment
/// other than the one `path` writes after its `?`. Dot segments are refused rather than
/// resolved, also percent-encoded (`%2e%2e`) or behind an encoded `/`, since a partner that
/// decodes before resolving would climb out of the base path.
fn join(base: &Url, path: &str) -> Result<Url, Error> {
    if !path.starts_with('/') {
        return Err(Error::Path("must start with '/'"));
    }
    if path.starts_with("//") {
        return Err(Error::Path("must not start with '//'"));
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Path(
            "only printable ASCII without spaces; percent-encode the rest",
        ));
    }
    if path.contains('\\') {
        return Err(Error::Path("must not contain '\\'"));
    }
    if path.contains('#') {
        return Err(Error::Path("must not contain a fragment"));
    }
    if !percent_escapes_are_valid(path) {
        return Err(Error::Path("'%' must start a percent-encoded byte"));
    }
    if hookyard_core::expr::path::has_dot_segment(path) {
        return Err(Error::Path("must not contain '.' or '..' segments"));
    }
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    if path.contains('@') {
        return Err(Error::Path("'@' must be percent-encoded before the query"));
    }
    let mut url = base.clone();
    url.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
    let query = match (base.query().filter(|q| !q.is_empty()), query) {
        (Some(fixed), Some(extra)) if !extra.is_empty() => Some(format!("{fixed}&{extra}")),
        (Some(fixed), _) => Some(fixed.to_owned()),
        (None, Some(extra)) if !extra.is_empty() => Some(extra.to_owned()),
        (None, _) => None,
    };
    url.set_query(query.as_deref());
    url.set_fragment(None);
    let same_origin = url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default()
        && url.username() == base.username()
        && url.password() == base.password();
    if !same_origin {
        return Err(Error::Path("must not change the connection's host"));
    }
    if !under_base_path(base, &url) {
        return Err(Error::Path("must stay under the connection's base path"));
    }
    if url.query().is_some() != query.is_some() || url.fragment().is_some() {
        return Err(Error::Path("must not add a query or fragment"));
    }
    Ok(url)
}

/// The URL's path is the base path or goes on from it at a `/`.
fn under_base_path(base: &Url, url: &Url) -> bool {
    let prefix = base.path().trim_end_matches('/');
    url.path()
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Every `%` is followed by two hex digits.
fn percent_escapes_are_valid(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    })
}

fn caller_headers(call: &CallRequest, auth: &Auth) -> Result<HeaderMap, Error> {
    let auth_headers: &[(HeaderName, HeaderValue)] = match auth {
        Auth::Headers(fixed) => fixed,
        _ => &[],
    };
    let idempotency_key = (!call.idempotency_key.is_empty())
        .then(|| HeaderValue::from_str(&call.idempotency_key))
        .transpose()
        .map_err(|_| Error::IdempotencyKey)?;
    let mut headers = HeaderMap::new();
    for (index, h) in call.headers.iter().enumerate() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| Error::Header {
            index,
            part: "name",
        })?;
        // Refuses CR, LF and NUL (header injection) while allowing non-ASCII bytes.
        let value = HeaderValue::from_bytes(h.value.as_bytes()).map_err(|_| Error::Header {
            index,
            part: "value",
        })?;
        let reserved = RESERVED_HEADERS.contains(&name)
            || auth_headers.iter().any(|(n, _)| *n == name)
            || (idempotency_key.is_some() && name == IDEMPOTENCY_KEY);
        if reserved {
            tracing::debug!(header = %name, "caller header dropped");
            continue;
        }
        headers.append(name, value);
    }
    if let Some(key) = idempotency_key {
        headers.insert(IDEMPOTENCY_KEY, key);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(base: &str, path: &str) -> Result<String, Error> {
        join(&Url::parse(base).expect("base"), path).map(String::from)
    }

    #[test]
    fn paths_are_appended_to_the_base_path_with_their_query() {
        let cases = [
            (
                "https://api.example",
                "/orders",
                "https://api.example/orders",
            ),
            (
                "https://api.example/v1",
                "/orders?x=1",
                "https://api.example/v1/orders?x=1",
            ),
            (
                "https://api.example/v1/",
                "/orders/7",
                "https://api.example/v1/orders/7",
            ),
            (
                "https://api.example/v1?k=v",
                "/o?x=1",
                "https://api.example/v1/o?k=v&x=1",
            ),
            (
                "https://api.example:8443",
                "/a%20b",
                "https://api.example:8443/a%20b",
            ),
            (
                "https://api.example",
                "/users/a%40b?mail=a@b",
                "https://api.example/users/a%40b?mail=a@b",
            ),
        ];
        for (base, path, expected) in cases {
            assert_eq!(joined(base, path).expect(path), expected);
        }
    }

    #[test]
    fn dot_segments_are_refused_in_every_spelling() {
        for path in [
            "/../x",
            "/a/..",
            "/a/.",
            "/./a",
            "/a/%2e%2e/x",
            "/a/%2E%2E",
            "/a/%2E./x",
            "/a/.%2e",
            "/a/..%2Fx",
            "/a/%2e%2e%2fx",
            "/a/..%5Cx",
            "/a/..\\x",
            "/a/%2e%2e?x=1",
        ] {
            assert!(
                matches!(joined("https://api.example/v1", path), Err(Error::Path(_))),
                "{path:?}"
            );
        }
        // Dots inside a segment, and dot segments in the query, are data.
        assert_eq!(
            joined("https://api.example/v1", "/a..b/%2e%2ex?p=../..").expect("joined"),
            "https://api.example/v1/a..b/%2e%2ex?p=../.."
        );
    }

    #[test]
    fn the_base_path_is_a_prefix_on_a_segment_boundary() {
        let base = Url::parse("https://api.example/v1").expect("base");
        let joined = |p: &str| Url::parse(p).expect("url");
        assert!(under_base_path(&base, &joined("https://api.example/v1")));
        assert!(under_base_path(&base, &joined("https://api.example/v1/o")));
        assert!(!under_base_path(
            &base,
            &joined("https://api.example/v10/o")
        ));
        assert!(!under_base_path(&base, &joined("https://api.example/x")));
        let root = Url::parse("https://api.example").expect("base");
        assert!(under_base_path(
            &root,
            &joined("https://api.example/anything")
        ));
    }

    #[test]
    fn broken_percent_escapes_are_refused() {
        for path in ["/a%", "/a%2", "/a%zz", "/a%2g?x"] {
            assert!(
                matches!(joined("https://api.example", path), Err(Error::Path(_))),
                "{path:?}"
            );
        }
        assert!(percent_escapes_are_valid("/a%2Fb%c3%A9?q=%25"));
    }

    #[test]
    fn paths_that_could_change_the_host_are_refused() {
        for path in [
            "",
            "x",
            "//evil.example/x",
            "http://evil/",
            "@evil.example",
            "/@evil.example",
            "/\\evil.example",
            "/x#frag",
            "/a b",
            "/a\r\nHost: evil",
            "/caf\u{e9}",
        ] {
            assert!(
                matches!(joined("https://api.example", path), Err(Error::Path(_))),
                "{path:?}"
            );
        }
    }

    #[test]
    fn only_known_methods_are_sent() {
        for m in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            assert_eq!(method(m).expect(m).as_str(), m);
        }
        for m in ["", "get", "CONNECT", "TRACE", "G ET"] {
            assert!(matches!(method(m), Err(Error::Method)), "{m:?}");
        }
    }
}
