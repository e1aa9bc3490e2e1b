//! Inbound authentication of a source, compared in constant time: none, HTTP basic (RFC 7617)
//! in `Authorization` or base64 in a query parameter (`query_basic`), or a shared key in a
//! header or query parameter (`api_key`).
//!
//! The expected user name, passwords and keys are kept only as SHA-256 digests, and what is
//! presented is hashed before comparing, so neither the comparison time nor the lengths tell a
//! sender how close a guess was. Both halves of a pair are always compared (no short circuit on
//! a wrong user name), and every configured password or key is compared, so the time does not
//! tell which one was close either.
//!
//! Submodule `query`: finding and removing a credential in the query string.

mod query;

use std::borrow::Cow;

use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use hookyard_core::config::SourceAuth;
use http::{HeaderMap, HeaderName, HeaderValue, header::AUTHORIZATION};
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
    /// No API key, or no `query_basic` parameter.
    #[error("missing credentials")]
    KeyMissing,
    /// A repeated or overlong key or parameter, or `query_basic` credentials that cannot be
    /// decoded.
    #[error("malformed credentials")]
    KeyMalformed,
    /// A key or `query_basic` credentials that do not match.
    #[error("wrong credentials")]
    KeyRejected,
}

impl AuthError {
    /// Whether the 401 carries the `Basic` challenge: only for `Authorization: Basic`, the one
    /// scheme a client can answer a challenge with.
    pub fn challenges(self) -> bool {
        matches!(
            self,
            Self::Missing | Self::WrongScheme | Self::Malformed | Self::Rejected
        )
    }
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
    decode_pair(token.as_bytes())
}

/// Decodes `base64(user:password)`; anything else is [`AuthError::Malformed`].
fn decode_pair(token: &[u8]) -> Result<Credentials, AuthError> {
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

/// Digests of an expected user name and its accepted passwords.
#[derive(Clone)]
pub(crate) struct Pair {
    username: [u8; 32],
    passwords: Vec<[u8; 32]>,
}

impl Pair {
    fn new(username: &str, auth: &SourceAuth) -> Self {
        Self {
            username: digest(username.as_bytes()),
            passwords: auth
                .passwords()
                .map(|p| digest(p.expose().as_bytes()))
                .collect(),
        }
    }

    fn check(&self, presented: &Credentials) -> Result<(), AuthError> {
        let user_ok = digest(presented.username.as_bytes()).ct_eq(&self.username);
        let password_ok = any_matches(presented.password.as_bytes(), &self.passwords);
        if bool::from(user_ok & password_ok) {
            Ok(())
        } else {
            Err(AuthError::Rejected)
        }
    }
}

/// Compares the digest of `presented` with every one of `expected`, without stopping early.
fn any_matches(presented: &[u8], expected: &[[u8; 32]]) -> subtle::Choice {
    let presented = digest(presented);
    expected
        .iter()
        .fold(subtle::Choice::from(0), |ok, e| ok | presented.ct_eq(e))
}

/// The check one source applies to every request.
#[derive(Clone)]
pub(crate) enum Authenticator {
    /// Anyone may send.
    None,
    /// HTTP basic in `Authorization`.
    Basic(Pair),
    /// Basic credentials, base64 `user:password`, in a query parameter.
    QueryBasic { param: String, pair: Pair },
    /// A key in a header; `None` for a name that is not a header name (refused at start, so
    /// only reachable in tests), which nothing matches.
    HeaderKey {
        header: Option<HeaderName>,
        keys: Vec<[u8; 32]>,
    },
    /// A key in a query parameter.
    QueryKey { param: String, keys: Vec<[u8; 32]> },
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Basic(_) => f.write_str("Basic(..)"),
            Self::QueryBasic { param, .. } => write!(f, "QueryBasic({param}, ..)"),
            Self::HeaderKey { header, .. } => write!(f, "HeaderKey({header:?}, ..)"),
            Self::QueryKey { param, .. } => write!(f, "QueryKey({param}, ..)"),
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Authenticator {
    pub(crate) fn new(auth: &SourceAuth) -> Self {
        let keys = |keys: &[hookyard_core::config::Secret]| {
            keys.iter().map(|k| digest(k.expose().as_bytes())).collect()
        };
        match auth {
            SourceAuth::None => Self::None,
            SourceAuth::Basic { username, .. } => Self::Basic(Pair::new(username, auth)),
            SourceAuth::QueryBasic {
                param, username, ..
            } => Self::QueryBasic {
                param: param.clone(),
                pair: Pair::new(username, auth),
            },
            SourceAuth::ApiKey {
                header: Some(header),
                keys: k,
                ..
            } => Self::HeaderKey {
                header: HeaderName::from_bytes(header.as_bytes()).ok(),
                keys: keys(k),
            },
            SourceAuth::ApiKey {
                header: None,
                query,
                keys: k,
            } => Self::QueryKey {
                param: query.clone().unwrap_or_default(),
                keys: keys(k),
            },
        }
    }

    /// The header this check consumed, if any: a credential ingress has verified rather than
    /// data for a handler, so it is not stored.
    pub(crate) fn consumed_header(&self) -> Option<&HeaderName> {
        match self {
            Self::Basic(_) => Some(&AUTHORIZATION),
            Self::HeaderKey { header, .. } => header.as_ref(),
            Self::None | Self::QueryBasic { .. } | Self::QueryKey { .. } => None,
        }
    }

    /// The query as stored: without the parameter this check consumed.
    pub(crate) fn stored_query<'q>(&self, query: &'q str) -> Cow<'q, str> {
        match self {
            Self::QueryBasic { param, .. } | Self::QueryKey { param, .. } => {
                Cow::Owned(query::without(query, param))
            }
            _ => Cow::Borrowed(query),
        }
    }

    /// Checks a request's headers and query string (`None` when the URI has none).
    pub(crate) fn check(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), AuthError> {
        match self {
            Self::None => Ok(()),
            Self::Basic(pair) => {
                let mut values = headers.get_all(AUTHORIZATION).iter();
                let value = values.next().ok_or(AuthError::Missing)?;
                if values.next().is_some() {
                    return Err(AuthError::Malformed);
                }
                pair.check(&parse_basic(value)?)
            }
            Self::QueryBasic { param, pair } => {
                let value = query::single_value(query, param)?;
                let presented =
                    decode_pair(value.trim_ascii()).map_err(|_| AuthError::KeyMalformed)?;
                pair.check(&presented).map_err(|_| AuthError::KeyRejected)
            }
            Self::HeaderKey { header, keys } => {
                let header = header.as_ref().ok_or(AuthError::KeyMissing)?;
                let mut values = headers.get_all(header).iter();
                let value = values.next().ok_or(AuthError::KeyMissing)?;
                if values.next().is_some() || value.len() > MAX_HEADER_LEN {
                    return Err(AuthError::KeyMalformed);
                }
                check_key(value.as_bytes(), keys)
            }
            Self::QueryKey { param, keys } => check_key(&query::single_value(query, param)?, keys),
        }
    }
}

fn check_key(presented: &[u8], keys: &[[u8; 32]]) -> Result<(), AuthError> {
    if presented.is_empty() {
        return Err(AuthError::KeyMissing);
    }
    if bool::from(any_matches(presented, keys)) {
        Ok(())
    } else {
        Err(AuthError::KeyRejected)
    }
}

#[cfg(test)]
mod tests;
