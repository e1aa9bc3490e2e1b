//! HMAC over a signed content given in pieces, and constant-time matching against candidates.

use hmac::{
    Hmac, Mac,
    digest::{KeyInit, Output},
};
use hookyard_core::config::{HmacAlgorithm, Secret};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Length in bytes of a MAC made with `algorithm`.
pub(super) fn output_len(algorithm: HmacAlgorithm) -> usize {
    match algorithm {
        HmacAlgorithm::Sha1 => 20,
        HmacAlgorithm::Sha256 => 32,
        HmacAlgorithm::Sha512 => 64,
    }
}

fn compute<M: Mac + KeyInit>(key: &[u8], content: &[&[u8]]) -> Option<Output<M>> {
    // HMAC takes keys of any length; the error cannot happen but is not unwrapped.
    let mut mac = <M as Mac>::new_from_slice(key).ok()?;
    for piece in content {
        mac.update(piece);
    }
    Some(mac.finalize().into_bytes())
}

/// The MAC of the concatenated `content` under `key`.
pub(super) fn hmac(algorithm: HmacAlgorithm, key: &[u8], content: &[&[u8]]) -> Option<Vec<u8>> {
    Some(match algorithm {
        HmacAlgorithm::Sha1 => compute::<Hmac<Sha1>>(key, content)?.to_vec(),
        HmacAlgorithm::Sha256 => compute::<Hmac<Sha256>>(key, content)?.to_vec(),
        HmacAlgorithm::Sha512 => compute::<Hmac<Sha512>>(key, content)?.to_vec(),
    })
}

/// True when some candidate equals the MAC of `content` under some key. Each key's MAC is
/// computed once; every comparison is constant-time and length-checked.
pub(super) fn any_matches<'k>(
    algorithm: HmacAlgorithm,
    keys: impl IntoIterator<Item = &'k [u8]>,
    content: &[&[u8]],
    candidates: &[&[u8]],
) -> bool {
    keys.into_iter().any(|key| {
        hmac(algorithm, key, content).is_some_and(|expected| {
            candidates
                .iter()
                .any(|c| bool::from(expected.as_slice().ct_eq(c)))
        })
    })
}

/// The raw bytes of each secret, the key of the HMAC schemes. An empty secret (one never
/// resolved) is skipped: everyone knows the empty key.
pub(super) fn secret_keys(secrets: &[Secret]) -> impl Iterator<Item = &[u8]> {
    secrets
        .iter()
        .map(|s| s.expose().as_bytes())
        .filter(|k| !k.is_empty())
}
