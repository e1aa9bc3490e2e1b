//! Who may use the admin API: whoever presents the bearer token.
//!
//! The token comes from a secret reference (`${env:NAME}` or `${file:/run/secrets/name}`),
//! resolved at start. Every gRPC or JSON request on the admin listener passes [`require`]; a
//! request without `authorization: Bearer <token>`, or with another token, is refused before it
//! reaches a handler: gRPC calls with UNAUTHENTICATED, HTTP requests with 401 and
//! `WWW-Authenticate: Bearer`. The console's pages take the same token once, on their sign-in
//! form, and then a session (see `console`).
//!
//! The presented token and the expected one are compared as SHA-256 digests with
//! [`subtle::ConstantTimeEq`], so neither the content nor the length of the token leaks through
//! the time a refusal takes. Refusals are logged without the presented value.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest token accepted at start: a guessable token would make the API an open door.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Why a configured token is refused at start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Shorter than [`MIN_TOKEN_CHARS`].
    #[error("the admin token must have at least {MIN_TOKEN_CHARS} characters")]
    TooShort,
    /// Holds whitespace or control characters, which an `authorization` header cannot carry
    /// unchanged.
    #[error("the admin token must be printable ASCII without spaces")]
    Unprintable,
}

/// Checks a token read from its secret reference before the API starts with it.
pub fn check_token(token: &SecretString) -> Result<(), TokenError> {
    let text = token.expose_secret();
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::Unprintable);
    }
    if text.chars().count() < MIN_TOKEN_CHARS {
        return Err(TokenError::TooShort);
    }
    Ok(())
}

/// The expected token, kept as its digest.
pub(crate) struct Guard {
    digest: [u8; 32],
}

impl Guard {
    pub(crate) fn new(token: &SecretString) -> Self {
        Self {
            digest: Sha256::digest(token.expose_secret().as_bytes()).into(),
        }
    }

    /// Whether `headers` carry the token as `authorization: Bearer <token>`.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        bearer(value).is_some_and(|token| self.admits_token(token))
    }

    /// Whether `token` is the expected token (the console's sign-in form presents it).
    pub(crate) fn admits_token(&self, token: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(token).into();
        presented.ct_eq(&self.digest).into()
    }
}

/// The token of a `Bearer` credential (the scheme is case-insensitive, RFC 9110).
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let bytes = value.as_bytes();
    let scheme = bytes.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| bytes[7..].trim_ascii())
        .filter(|token| !token.is_empty())
}

/// The middleware in front of every route of the admin listener.
pub(crate) async fn require(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    if guard.admits(request.headers()) {
        return next.run(request).await;
    }
    tracing::warn!(path = %request.uri().path(), "admin request refused: missing or wrong token");
    if is_grpc(request.headers()) {
        return tonic::Status::unauthenticated("missing or wrong bearer token").into_http();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({
            "code": "unauthenticated",
            "message": "missing or wrong bearer token",
        })),
    )
        .into_response()
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "a-long-enough-admin-token";

    fn headers(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(value).expect("header value"),
        );
        h
    }

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let guard = Guard::new(&SecretString::from(TOKEN));
        assert!(guard.admits(&headers(format!("Bearer {TOKEN}").as_bytes())));
        assert!(guard.admits(&headers(format!("bearer {TOKEN}").as_bytes())));
        for refused in [
            format!("Bearer {TOKEN}x"),
            format!("Bearer {}", &TOKEN[1..]),
            format!("Basic {TOKEN}"),
            TOKEN.to_owned(),
            "Bearer ".to_owned(),
            "Bearer".to_owned(),
            String::new(),
        ] {
            assert!(!guard.admits(&headers(refused.as_bytes())), "{refused:?}");
        }
        assert!(!guard.admits(&headers(b"Bearer \xff\xfe")));
        assert!(!guard.admits(&HeaderMap::new()));
        let mut twice = headers(format!("Bearer {TOKEN}").as_bytes());
        twice.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer other"),
        );
        assert!(!guard.admits(&twice), "two credentials are ambiguous");
    }

    #[test]
    fn short_or_unprintable_tokens_are_refused_at_start() {
        assert_eq!(check_token(&SecretString::from(TOKEN)), Ok(()));
        assert_eq!(
            check_token(&SecretString::from("short")),
            Err(TokenError::TooShort)
        );
        assert_eq!(
            check_token(&SecretString::from("with a space in the token")),
            Err(TokenError::Unprintable)
        );
    }
}
