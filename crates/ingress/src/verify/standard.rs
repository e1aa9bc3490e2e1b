//! Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature`, signed content
//! `{id}.{timestamp}.{body}`. The signature header holds space-separated `version,signature`
//! pairs: `v1,<base64 HMAC-SHA256>` checked with `whsec_<base64 key>` secrets and
//! `v1a,<base64 ed25519 signature>` checked with `whpk_<base64 public key>` secrets. Pairs of
//! other versions are skipped, as the specification asks, so a sender can add a new scheme
//! beside one we check; any matching pair passes.
//!
//! Svix sends the same scheme under its own names, `svix-id`, `svix-timestamp` and
//! `svix-signature`, and its libraries accept both. So do we, one family per request: the
//! `webhook-` headers when any of them is present, else the `svix-` headers. Mixing the two
//! families is refused as a missing header rather than pieced together.

use std::time::{Duration, SystemTime};

use base64::Engine;
use ed25519_dalek::{Signature as Ed25519Signature, VerifyingKey};
use hookyard_core::config::{HmacAlgorithm, Secret};
use http::HeaderMap;

use super::{
    BASE64, MAX_HEADER_LEN, MAX_SIGNATURES, VerifyError, check_timestamp, mac::any_matches,
    parse_timestamp, single,
};

/// The three header names of one family.
struct Names {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
}

const STANDARD: Names = Names {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};

const SVIX: Names = Names {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

impl Names {
    fn any_in(&self, headers: &HeaderMap) -> bool {
        [self.id, self.timestamp, self.signature]
            .iter()
            .any(|name| headers.contains_key(*name))
    }

    /// The family a request uses: Standard Webhooks' names are preferred, so a missing header
    /// is reported under them when neither family is present.
    fn of(headers: &HeaderMap) -> &'static Self {
        if !STANDARD.any_in(headers) && SVIX.any_in(headers) {
            &SVIX
        } else {
            &STANDARD
        }
    }
}

/// One signature of a `webhook-signature` header, of a version we check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Candidate {
    /// `v1`: HMAC-SHA256.
    V1([u8; 32]),
    /// `v1a`: ed25519.
    V1a([u8; 64]),
}

/// A secret of the scheme.
pub(crate) enum Key {
    /// `whsec_…`: an HMAC key.
    Symmetric(Vec<u8>),
    /// `whpk_…`: an ed25519 public key.
    Public(VerifyingKey),
}

impl Key {
    /// Reads `whsec_<base64>` or `whpk_<base64 of 32 bytes>`; `None` for anything else.
    pub(crate) fn parse(secret: &str) -> Option<Self> {
        if let Some(encoded) = secret.strip_prefix("whsec_") {
            let key = BASE64.decode(encoded).ok()?;
            return (!key.is_empty()).then_some(Self::Symmetric(key));
        }
        let encoded = secret.strip_prefix("whpk_")?;
        let bytes: [u8; 32] = BASE64.decode(encoded).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok().map(Self::Public)
    }
}

/// The signatures of a `webhook-signature` (or `svix-signature`) value. Malformed when empty, too long, holding more
/// than [`MAX_SIGNATURES`] pairs, a pair without a comma, or a `v1`/`v1a` signature that is not
/// base64 of the right length; unsupported when no pair has a version we check.
pub(crate) fn parse(header: &str, value: &[u8]) -> Result<Vec<Candidate>, VerifyError> {
    let malformed = || VerifyError::MalformedHeader(header.to_owned());
    if value.len() > MAX_HEADER_LEN {
        return Err(malformed());
    }
    let text = std::str::from_utf8(value).map_err(|_| malformed())?;
    let mut pairs = 0;
    let mut candidates = Vec::new();
    for pair in text.split(' ').filter(|p| !p.is_empty()) {
        pairs += 1;
        if pairs > MAX_SIGNATURES {
            return Err(malformed());
        }
        let (version, signature) = pair.split_once(',').ok_or_else(malformed)?;
        let decoded = || BASE64.decode(signature).ok();
        match version {
            "v1" => candidates.push(Candidate::V1(
                decoded()
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(malformed)?,
            )),
            "v1a" => candidates.push(Candidate::V1a(
                decoded()
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(malformed)?,
            )),
            _ => {}
        }
    }
    if pairs == 0 {
        return Err(malformed());
    }
    if candidates.is_empty() {
        return Err(VerifyError::UnsupportedVersion(header.to_owned()));
    }
    Ok(candidates)
}

pub(crate) fn verify(
    secrets: &[Secret],
    tolerance: Duration,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), VerifyError> {
    let names = Names::of(headers);
    let id = single(headers, names.id)?.as_bytes();
    let timestamp = single(headers, names.timestamp)?.as_bytes();
    let candidates = parse(
        names.signature,
        single(headers, names.signature)?.as_bytes(),
    )?;
    check_timestamp(parse_timestamp(timestamp)?, tolerance, now)?;

    let keys: Vec<Key> = secrets
        .iter()
        .filter_map(|s| Key::parse(s.expose()))
        .collect();
    let content: [&[u8]; 5] = [id, b".", timestamp, b".", body];
    let hmacs: Vec<&[u8]> = candidates
        .iter()
        .filter_map(|c| match c {
            Candidate::V1(s) => Some(s.as_slice()),
            Candidate::V1a(_) => None,
        })
        .collect();
    let symmetric = keys.iter().filter_map(|k| match k {
        Key::Symmetric(key) => Some(key.as_slice()),
        Key::Public(_) => None,
    });
    if !hmacs.is_empty() && any_matches(HmacAlgorithm::Sha256, symmetric, &content, &hmacs) {
        return Ok(());
    }
    let signatures: Vec<Ed25519Signature> = candidates
        .iter()
        .filter_map(|c| match c {
            Candidate::V1a(s) => Some(Ed25519Signature::from_bytes(s)),
            Candidate::V1(_) => None,
        })
        .collect();
    let public: Vec<&VerifyingKey> = keys
        .iter()
        .filter_map(|k| match k {
            Key::Public(key) => Some(key),
            Key::Symmetric(_) => None,
        })
        .collect();
    if !signatures.is_empty() && !public.is_empty() {
        let message = content.concat();
        let verified = public.iter().any(|key| {
            signatures
                .iter()
                .any(|s| key.verify_strict(&message, s).is_ok())
        });
        if verified {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

#[cfg(test)]
mod tests;
