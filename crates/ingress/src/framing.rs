//! The HTTP/1 message rules RFC 9110 and RFC 9112 tell a server to enforce, checked on every
//! request before routing, because hyper parses leniently where the RFCs ask for a 400:
//!
//! - **`Host`** (RFC 9112 §3.2): an HTTP/1.1 request without a `Host` header, or any request
//!   with more than one, or one whose value is not a host and optional port, is answered 400.
//!   A proxy in front and ingress could otherwise disagree about which site a request is for.
//! - **`Transfer-Encoding`** (RFC 9112 §6.1, §6.3): ingress decodes only `chunked`, so any other
//!   coding or list of codings (`gzip, chunked`) is answered 400 rather than stored still
//!   encoded. hyper itself answers 400 to `Transfer-Encoding` in an HTTP/1.0 request, and
//!   drops `Content-Length` when `Transfer-Encoding` is present (RFC 9112 §6.3: the coding
//!   wins).
//!
//! These answers close the connection: once the framing is in doubt, so is where the next
//! request on it begins. HTTP/2 requests carry their authority and length in the protocol and
//! are left to hyper.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, Version, header};
use std::sync::Arc;

use crate::{error::Error, routes::App};

/// What is wrong with a request's framing; the `message` of the 400 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// An HTTP/1.1 request without `Host`.
    #[error("missing Host header")]
    MissingHost,
    /// More than one `Host` header.
    #[error("more than one Host header")]
    RepeatedHost,
    /// A `Host` value that is not `host[:port]`.
    #[error("malformed Host header")]
    MalformedHost,
    /// A transfer coding other than exactly `chunked`.
    #[error("unsupported Transfer-Encoding; only chunked is accepted")]
    TransferCoding,
}

/// Checks the request head of an HTTP/1 request; other versions pass.
pub(crate) fn check(version: Version, headers: &HeaderMap) -> Result<(), FramingError> {
    if version != Version::HTTP_11 && version != Version::HTTP_10 {
        return Ok(());
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => return Err(FramingError::MissingHost),
        (None, _) => {}
        (Some(_), Some(_)) => return Err(FramingError::RepeatedHost),
        (Some(host), None) => {
            if !valid_host(host) {
                return Err(FramingError::MalformedHost);
            }
        }
    }
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(coding) = codings.next() {
        let chunked = coding
            .to_str()
            .is_ok_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        if !chunked || codings.next().is_some() {
            return Err(FramingError::TransferCoding);
        }
    }
    Ok(())
}

/// `uri-host [ ":" port ]`: an authority without user info.
fn valid_host(value: &HeaderValue) -> bool {
    let Ok(text) = value.to_str() else {
        return false;
    };
    if text.is_empty() || text.contains('@') {
        return false;
    }
    let Ok(authority) = text.parse::<http::uri::Authority>() else {
        return false;
    };
    // The parser takes `name:anything`; a port is digits only.
    match text.get(authority.host().len()..) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix(':')
            .is_some_and(|port| port.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Middleware answering 400 (and closing the connection) for a request that fails [`check`].
pub(crate) async fn enforce(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Err(reason) = check(request.version(), request.headers()) else {
        return next.run(request).await;
    };
    let source = app
        .sources
        .get(request.uri().path())
        .map_or("", |s| s.name.as_str());
    let error = Error::Framing(reason);
    tracing::info!(source, %reason, "request refused: malformed framing");
    app.metrics.request(source, error.kind());
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    #[test]
    fn one_valid_host_is_required_on_http_1_1() {
        let v11 = Version::HTTP_11;
        assert_eq!(check(v11, &head(&[("host", "example.com")])), Ok(()));
        assert_eq!(check(v11, &head(&[("host", "127.0.0.1:8080")])), Ok(()));
        assert_eq!(check(v11, &head(&[("host", "[::1]:80")])), Ok(()));
        assert_eq!(check(v11, &head(&[])), Err(FramingError::MissingHost));
        assert_eq!(
            check(v11, &head(&[("host", "a"), ("host", "a")])),
            Err(FramingError::RepeatedHost)
        );
        for bad in ["", "a b", "user@evil", "a/b", "a:port"] {
            assert_eq!(
                check(v11, &head(&[("host", bad)])),
                Err(FramingError::MalformedHost),
                "{bad:?}"
            );
        }
        assert_eq!(check(Version::HTTP_10, &head(&[])), Ok(()));
        assert_eq!(check(Version::HTTP_2, &head(&[])), Ok(()));
    }

    #[test]
    fn only_chunked_alone_is_accepted_as_transfer_coding() {
        let with = |te: &[&str]| {
            let mut pairs = vec![("host", "x")];
            pairs.extend(te.iter().map(|t| ("transfer-encoding", *t)));
            check(Version::HTTP_11, &head(&pairs))
        };
        assert_eq!(with(&["chunked"]), Ok(()));
        assert_eq!(with(&["Chunked"]), Ok(()));
        for bad in [
            &["gzip, chunked"][..],
            &["chunked, chunked"],
            &["gzip"],
            &["identity"],
            &[""],
            &["gzip", "chunked"],
            &["chunked", "chunked"],
        ] {
            assert_eq!(with(bad), Err(FramingError::TransferCoding), "{bad:?}");
        }
    }
}
