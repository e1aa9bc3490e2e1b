//! Stripe: `Stripe-Signature: t=<timestamp>,v1=<hex>[,v1=<hex>…]`, each `v1` an HMAC-SHA256 of
//! `{t}.{body}` under the endpoint secret used as is (`whsec_…` included). Other keys (`v0`,
//! test-mode signatures, future schemes) are ignored, as Stripe's documentation asks; any
//! matching `v1` passes.

use std::time::{Duration, SystemTime};

use hookyard_core::config::{HmacAlgorithm, Secret, SignatureEncoding};
use http::HeaderMap;

use super::{
    MAX_HEADER_LEN, MAX_SIGNATURES, VerifyError, check_timestamp, decode,
    mac::{any_matches, secret_keys},
    parse_timestamp, single,
};

const SIGNATURE: &str = "stripe-signature";

/// A parsed `Stripe-Signature` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    /// `t` as sent (it is signed as text).
    pub timestamp_text: &'a str,
    /// `t` as a number.
    pub timestamp: u64,
    /// The `v1` signatures.
    pub v1: Vec<Vec<u8>>,
}

/// Parses a `Stripe-Signature` value. Malformed when too long, an item has no `=`, `t` is
/// missing or repeated, a `v1` is not 64 hex digits, or there are more than [`MAX_SIGNATURES`]
/// `v1`; unsupported when there is no `v1`.
pub(crate) fn parse(value: &[u8]) -> Result<Header<'_>, VerifyError> {
    let malformed = || VerifyError::MalformedHeader(SIGNATURE.to_owned());
    if value.len() > MAX_HEADER_LEN {
        return Err(malformed());
    }
    let text = std::str::from_utf8(value).map_err(|_| malformed())?;
    let mut timestamp_text = None;
    let mut v1 = Vec::new();
    for item in text.split(',') {
        let (key, value) = item.trim().split_once('=').ok_or_else(malformed)?;
        match key {
            "t" if timestamp_text.is_none() => timestamp_text = Some(value),
            "t" => return Err(malformed()),
            "v1" if v1.len() < MAX_SIGNATURES => {
                v1.push(decode(value.as_bytes(), SignatureEncoding::Hex, 32).ok_or_else(malformed)?)
            }
            "v1" => return Err(malformed()),
            _ => {}
        }
    }
    let timestamp_text = timestamp_text.ok_or_else(malformed)?;
    let timestamp = parse_timestamp(timestamp_text.as_bytes())?;
    if v1.is_empty() {
        return Err(VerifyError::UnsupportedVersion(SIGNATURE.to_owned()));
    }
    Ok(Header {
        timestamp_text,
        timestamp,
        v1,
    })
}

pub(crate) fn verify(
    secrets: &[Secret],
    tolerance: Duration,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), VerifyError> {
    let header = parse(single(headers, SIGNATURE)?.as_bytes())?;
    check_timestamp(header.timestamp, tolerance, now)?;
    let content: [&[u8]; 3] = [header.timestamp_text.as_bytes(), b".", body];
    let candidates: Vec<&[u8]> = header.v1.iter().map(Vec::as_slice).collect();
    if any_matches(
        HmacAlgorithm::Sha256,
        secret_keys(secrets),
        &content,
        &candidates,
    ) {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

#[cfg(test)]
mod tests;
