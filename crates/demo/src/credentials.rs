//! What an `Authorization` header carries, and constant-time comparison of secrets.

use axum::http::{HeaderMap, header};
use base64::{Engine, engine::general_purpose::STANDARD};
use subtle::ConstantTimeEq;

/// The credentials a request presents, decoded from its `Authorization` header.
///
/// No `Debug`: the variants hold secrets that must never reach a log line.
pub enum Presented {
    /// No `Authorization` header.
    None,
    /// `Basic` with the user and password as sent (base64-decoded, nothing more).
    Basic { user: String, password: String },
    /// `Bearer` with its token.
    Bearer(String),
    /// A header that is neither well-formed `Basic` nor `Bearer`.
    Malformed,
}

impl Presented {
    /// Reads the `Authorization` header of a request.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return if headers.contains_key(header::AUTHORIZATION) {
                Self::Malformed
            } else {
                Self::None
            };
        };
        let Ok(value) = value.to_str() else {
            return Self::Malformed;
        };
        // Auth schemes are case-insensitive (RFC 9110 §11.1).
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            Self::Bearer(rest.to_owned())
        } else if scheme.eq_ignore_ascii_case("basic") {
            decode_basic(rest).map_or(Self::Malformed, |(user, password)| Self::Basic {
                user,
                password,
            })
        } else {
            Self::Malformed
        }
    }
}

fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let decoded = STANDARD.decode(encoded).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Compares two secrets without leaking, through timing, how long a prefix matched.
pub fn secret_eq(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn presented(value: &str) -> Presented {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("valid header"),
        );
        Presented::from_headers(&headers)
    }

    #[test]
    fn reads_basic_and_bearer_case_insensitively() {
        let Presented::Basic { user, password } = presented("basic dXNlcjpwYTpzcw==") else {
            panic!("expected basic");
        };
        assert_eq!((user.as_str(), password.as_str()), ("user", "pa:ss"));
        let Presented::Bearer(token) = presented("BEARER abc") else {
            panic!("expected bearer");
        };
        assert_eq!(token, "abc");
    }

    #[test]
    fn missing_header_differs_from_malformed_one() {
        assert!(matches!(
            Presented::from_headers(&HeaderMap::new()),
            Presented::None
        ));
        for value in ["Bearer", "Basic !!!", "Basic dXNlcg==", "Digest x", "token"] {
            assert!(matches!(presented(value), Presented::Malformed), "{value}");
        }
    }

    #[test]
    fn secret_eq_compares_whole_values() {
        assert!(secret_eq("s3cret", "s3cret"));
        assert!(!secret_eq("s3cre", "s3cret"));
        assert!(!secret_eq("", "s3cret"));
    }
}
