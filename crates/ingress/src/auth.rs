//! Inbound authentication of a source: none, or HTTP basic (RFC 7617) compared in constant time.
//!
//! The expected user name and password are kept only as SHA-256 digests, and a presented pair
//! is hashed before comparing, so neither the comparison time nor the lengths tell a sender how
//! close a guess was. Both halves are always compared (no short circuit on a wrong user name).

use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use hookyard_core::config::SourceAuth;
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The `WWW-Authenticate` challenge sent with every 401.
pub const CHALLENGE: &str = r#"Basic realm="hookyard""#;

/// Longest `Authorization` value looked at; longer ones are refused before decoding, so a huge
/// header costs no decoding or hashing.
const MAX_HEADER_LEN: usize = 4096;

/// Standard alphabet; senders differ on padding, and padding carries no information.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a request was not authenticated. The text names the problem, never what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing credentials")]
    Missing,
    /// An `Authorization` header with another scheme than `Basic`.
    #[error("authorization scheme is not basic")]
    WrongScheme,
    /// `Basic` credentials that cannot be decoded (bad base64, no colon, not UTF-8, too long,
    /// repeated header).
    #[error("malformed basic credentials")]
    Malformed,
    /// Well-formed credentials that do not match.
    #[error("wrong credentials")]
    Rejected,
}

/// A user name and password taken from a `Basic` header. Never printed.
pub struct Credentials {
    /// The user name (before the first colon).
    pub username: String,
    /// The password (after the first colon; may itself contain colons).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

/// Parses an `Authorization: Basic <base64(user:password)>` value.
pub fn parse_basic(value: &HeaderValue) -> Result<Credentials, AuthError> {
    let bytes = value.as_bytes();
    if bytes.len() > MAX_HEADER_LEN {
        return Err(AuthError::Malformed);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| AuthError::Malformed)?
        .trim();
    let (scheme, token) = match text.split_once([' ', '\t']) {
        Some((scheme, token)) => (scheme, token.trim()),
        None => (text, ""),
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::WrongScheme);
    }
    if token.is_empty() {
        return Err(AuthError::Malformed);
    }
    let decoded = BASE64.decode(token).map_err(|_| AuthError::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
    let (username, password) = decoded.split_once(':').ok_or(AuthError::Malformed)?;
    Ok(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// The check one source applies to every request.
#[derive(Clone)]
pub(crate) enum Authenticator {
    /// Anyone may send.
    None,
    /// HTTP basic; digests of the expected user name and password.
    Basic {
        username: [u8; 32],
        password: [u8; 32],
    },
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Basic { .. } => f.write_str("Basic(..)"),
        }
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Authenticator {
    pub(crate) fn new(auth: &SourceAuth) -> Self {
        match auth {
            SourceAuth::None => Self::None,
            SourceAuth::Basic { username, password } => Self::Basic {
                username: digest(username),
                password: digest(password.expose()),
            },
        }
    }

    /// True when the request's `Authorization` header was consumed by this check, so it is a
    /// credential ingress has verified rather than data for a handler.
    pub(crate) fn consumes_authorization(&self) -> bool {
        matches!(self, Self::Basic { .. })
    }

    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let Self::Basic { username, password } = self else {
            return Ok(());
        };
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let value = values.next().ok_or(AuthError::Missing)?;
        if values.next().is_some() {
            return Err(AuthError::Malformed);
        }
        let presented = parse_basic(value)?;
        let user_ok = digest(&presented.username).ct_eq(username);
        let password_ok = digest(&presented.password).ct_eq(password);
        if bool::from(user_ok & password_ok) {
            Ok(())
        } else {
            Err(AuthError::Rejected)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookyard_core::config::{Secret, SecretRef};

    fn header(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).expect("valid header value")
    }

    fn basic(raw: &[u8]) -> HeaderValue {
        header(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }

    fn parse(value: &HeaderValue) -> Result<(String, String), AuthError> {
        parse_basic(value).map(|c| (c.username, c.password))
    }

    #[test]
    fn valid_credentials_parse() {
        assert_eq!(
            parse(&basic(b"shop:s3cret")),
            Ok(("shop".into(), "s3cret".into()))
        );
    }

    #[test]
    fn scheme_is_case_insensitive_and_padding_optional() {
        assert_eq!(
            parse(&header("bAsIc   c2hvcDpz")),
            Ok(("shop".into(), "s".into()))
        );
        // "a:bc" is YTpiYw== with padding
        assert_eq!(
            parse(&header("Basic YTpiYw")),
            Ok(("a".into(), "bc".into()))
        );
    }

    #[test]
    fn password_may_contain_colons() {
        assert_eq!(
            parse(&basic(b"shop:a:b::c")),
            Ok(("shop".into(), "a:b::c".into()))
        );
        assert_eq!(parse(&basic(b":")), Ok((String::new(), String::new())));
    }

    #[test]
    fn bad_base64_is_malformed() {
        assert_eq!(
            parse(&header("Basic !!!notbase64")),
            Err(AuthError::Malformed)
        );
        assert_eq!(parse(&header("Basic c2hv cDpz")), Err(AuthError::Malformed));
    }

    #[test]
    fn missing_colon_is_malformed() {
        assert_eq!(parse(&basic(b"shops3cret")), Err(AuthError::Malformed));
    }

    #[test]
    fn other_schemes_are_refused() {
        assert_eq!(parse(&header("Bearer abc")), Err(AuthError::WrongScheme));
        assert_eq!(parse(&header("Basicc2hvcDpz")), Err(AuthError::WrongScheme));
        assert_eq!(parse(&header("c2hvcDpz")), Err(AuthError::WrongScheme));
    }

    #[test]
    fn empty_values_are_refused() {
        assert_eq!(parse(&header("")), Err(AuthError::WrongScheme));
        assert_eq!(parse(&header("Basic")), Err(AuthError::Malformed));
        assert_eq!(parse(&header("Basic   ")), Err(AuthError::Malformed));
    }

    #[test]
    fn non_utf8_is_malformed() {
        let raw = HeaderValue::from_bytes(b"Basic \xff\xfe").expect("opaque header value");
        assert_eq!(parse(&raw), Err(AuthError::Malformed));
        assert_eq!(parse(&basic(b"shop:\xff\xfe")), Err(AuthError::Malformed));
    }

    #[test]
    fn huge_header_is_malformed_without_decoding() {
        let huge = "A".repeat(1024 * 1024);
        assert_eq!(
            parse(&header(&format!("Basic {huge}"))),
            Err(AuthError::Malformed)
        );
    }

    fn authenticator() -> Authenticator {
        Authenticator::new(&SourceAuth::Basic {
            username: "shop".into(),
            password: Secret::from_value(SecretRef::Env("PW".into()), "pa:ss"),
        })
    }

    fn headers(values: &[HeaderValue]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, v.clone());
        }
        map
    }

    #[test]
    fn check_accepts_only_the_configured_pair() {
        let auth = authenticator();
        assert_eq!(auth.check(&headers(&[basic(b"shop:pa:ss")])), Ok(()));
        assert_eq!(
            auth.check(&headers(&[basic(b"shop:pa:sx")])),
            Err(AuthError::Rejected)
        );
        assert_eq!(
            auth.check(&headers(&[basic(b"shoq:pa:ss")])),
            Err(AuthError::Rejected)
        );
        assert_eq!(
            auth.check(&headers(&[basic(b"shop:pa")])),
            Err(AuthError::Rejected)
        );
        assert_eq!(auth.check(&headers(&[])), Err(AuthError::Missing));
        assert_eq!(
            auth.check(&headers(&[basic(b"shop:pa:ss"), basic(b"shop:pa:ss")])),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn none_accepts_anything() {
        let auth = Authenticator::new(&SourceAuth::None);
        assert_eq!(auth.check(&headers(&[])), Ok(()));
        assert!(!auth.consumes_authorization());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!("{:?}", authenticator());
        assert_eq!(text, "Basic(..)");
        let creds = parse_basic(&basic(b"shop:pa:ss")).expect("valid");
        assert!(!format!("{creds:?}").contains("pa:ss"));
    }
}
