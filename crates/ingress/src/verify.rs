//! Signature verification over the exact bytes received, per source scheme.
//!
//! Every scheme follows the same rules:
//! - Each header a scheme reads must appear once; a repeated signature, timestamp or id header
//!   is refused as malformed rather than guessing which copy the sender meant (a proxy that
//!   appends headers must not turn a forged copy into a second chance).
//! - A signature is decoded and length-checked before any comparison, so an empty, truncated or
//!   overlong value is malformed, never a prefix match. Comparisons are constant-time
//!   ([`subtle`]); each secret's MAC is computed once per request however many signatures the
//!   header carries, and a header may carry at most [`MAX_SIGNATURES`] of them.
//! - Timestamps are decimal Unix seconds, at most 20 digits, parsed without overflow; a request
//!   whose timestamp is further than the tolerance from the clock, in either direction, is
//!   refused.
//! - Every secret in the list is tried, so a secret can be rotated without downtime.
//!
//! Errors name the problem and the header, never a secret or the expected signature.
//!
//! Submodules: `prefixed` (one header holding `prefix + encoding(MAC)`: GitHub, Shopify, Slack
//! and the generic `hmac` scheme), `standard` (Standard Webhooks), `stripe`, `mac` (HMAC and
//! constant-time matching).

mod mac;
mod prefixed;
mod standard;
mod stripe;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use hookyard_core::config::{ContentPart, Signature, SignatureEncoding, content_parts};
use http::{HeaderMap, HeaderValue};

/// Most signatures looked at in one header (Standard Webhooks, Stripe); more is malformed, so a
/// huge header cannot multiply the work of verifying one request.
pub const MAX_SIGNATURES: usize = 16;

/// Longest signature header looked at; longer values are malformed before any decoding.
const MAX_HEADER_LEN: usize = 4096;

/// Standard alphabet; senders differ on padding, and padding carries no information.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a request's signature was refused. The text names the problem, never a secret, the
/// expected signature or what was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent.
    #[error("missing {0} header")]
    MissingHeader(String),
    /// A header the scheme needs cannot be parsed, is repeated, or holds a signature of the
    /// wrong length or encoding.
    #[error("malformed {0} header")]
    MalformedHeader(String),
    /// The signature header holds no signature of a version this scheme checks.
    #[error("no signature of a supported version in the {0} header")]
    UnsupportedVersion(String),
    /// The signed timestamp is further from the clock than the tolerance.
    #[error("signature timestamp outside the accepted tolerance")]
    TimestampOutsideTolerance,
    /// The signed timestamp is not decimal Unix seconds, or too large.
    #[error("malformed signature timestamp")]
    TimestampMalformed,
    /// Well-formed signatures, none of which matches any secret.
    #[error("no signature matched")]
    NoMatch,
}

impl VerifyError {
    /// Short machine-readable kind, the `error` field of the 401 answer.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "signature_missing",
            Self::MalformedHeader(_) => "signature_malformed",
            Self::UnsupportedVersion(_) => "signature_unsupported_version",
            Self::TimestampOutsideTolerance => "signature_timestamp_out_of_tolerance",
            Self::TimestampMalformed => "signature_timestamp_malformed",
            Self::NoMatch => "signature_mismatch",
        }
    }
}

/// A signature configuration ingress cannot verify with, found at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// A secret is empty (for instance never resolved); an empty HMAC key is known to everyone.
    #[error("signature secret {index} is empty")]
    EmptySecret {
        /// Position in `secrets`.
        index: usize,
    },
    /// A Standard Webhooks secret that is not `whsec_<base64>` or `whpk_<base64 ed25519 key>`.
    #[error("signature secret {index} is not a whsec_ or whpk_ base64 key")]
    BadKey {
        /// Position in `secrets`.
        index: usize,
    },
    /// An `hmac` header name or content template that the configuration check refuses.
    #[error("invalid hmac signature setting {0}")]
    BadSetting(&'static str),
}

/// Checks once, at start, what [`verify`] would otherwise find on every request: secrets that
/// are empty or not keys, and `hmac` settings that `hookyard validate` refuses.
pub fn check(signature: &Signature) -> Result<(), SetupError> {
    for (index, secret) in signature.secrets().iter().enumerate() {
        if secret.expose().is_empty() {
            return Err(SetupError::EmptySecret { index });
        }
    }
    match signature {
        Signature::StandardWebhooks { secrets, .. } => {
            for (index, secret) in secrets.iter().enumerate() {
                standard::Key::parse(secret.expose()).ok_or(SetupError::BadKey { index })?;
            }
        }
        Signature::Hmac(hmac) => {
            let names = [
                Some(&hmac.header),
                hmac.timestamp_header.as_ref(),
                hmac.id_header.as_ref(),
            ];
            if names
                .into_iter()
                .flatten()
                .any(|n| http::HeaderName::from_bytes(n.as_bytes()).is_err())
            {
                return Err(SetupError::BadSetting("header"));
            }
            let parts =
                content_parts(&hmac.content).map_err(|_| SetupError::BadSetting("content"))?;
            let needs = |part, header: &Option<String>| parts.contains(&part) == header.is_some();
            if !parts.contains(&ContentPart::Body)
                || !needs(ContentPart::Timestamp, &hmac.timestamp_header)
                || (parts.contains(&ContentPart::Id) && hmac.id_header.is_none())
            {
                return Err(SetupError::BadSetting("content"));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Verifies the signature of one request: `headers` as received, `body` the exact bytes read,
/// `now` the clock timestamps are compared with.
pub fn verify(
    signature: &Signature,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), VerifyError> {
    match signature {
        Signature::StandardWebhooks { secrets, tolerance } => {
            standard::verify(secrets, *tolerance, headers, body, now)
        }
        Signature::Stripe { secrets, tolerance } => {
            stripe::verify(secrets, *tolerance, headers, body, now)
        }
        Signature::Github { secrets } => {
            prefixed::verify(&prefixed::github(), secrets, headers, body, now)
        }
        Signature::Shopify { secrets } => {
            prefixed::verify(&prefixed::shopify(), secrets, headers, body, now)
        }
        Signature::Slack { secrets, tolerance } => {
            prefixed::verify(&prefixed::slack(*tolerance), secrets, headers, body, now)
        }
        Signature::Hmac(hmac) => {
            let layout = prefixed::Layout::from_config(hmac);
            prefixed::verify(&layout, &hmac.secrets, headers, body, now)
        }
    }
}

/// The one value of header `name`: missing or repeated is an error.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h HeaderValue, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let value = values
        .next()
        .ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))?;
    if values.next().is_some() {
        return Err(VerifyError::MalformedHeader(name.to_owned()));
    }
    Ok(value)
}

/// Decimal Unix seconds: 1 to 20 ASCII digits that fit in a `u64`.
pub(crate) fn parse_timestamp(text: &[u8]) -> Result<u64, VerifyError> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return Err(VerifyError::TimestampMalformed);
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(VerifyError::TimestampMalformed)
}

/// Refuses a timestamp further than `tolerance` from `now`, in the past or the future.
fn check_timestamp(
    timestamp: u64,
    tolerance: Duration,
    now: SystemTime,
) -> Result<(), VerifyError> {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if Duration::from_secs(timestamp.abs_diff(now)) > tolerance {
        return Err(VerifyError::TimestampOutsideTolerance);
    }
    Ok(())
}

/// Decodes a signature of exactly `len` bytes; anything else (empty, truncated, overlong, bad
/// characters) is `None`.
fn decode(encoded: &[u8], encoding: SignatureEncoding, len: usize) -> Option<Vec<u8>> {
    let decoded = match encoding {
        SignatureEncoding::Hex if encoded.len() == 2 * len => hex::decode(encoded).ok()?,
        SignatureEncoding::Hex => return None,
        // Padded length bounds the text before decoding anything.
        SignatureEncoding::Base64 if encoded.len() <= len.div_ceil(3) * 4 => {
            BASE64.decode(encoded).ok()?
        }
        SignatureEncoding::Base64 => return None,
    };
    (decoded.len() == len).then_some(decoded)
}

#[cfg(test)]
mod tests;
