//! The keys token records are encrypted with: AES-256-GCM, each key with a version so keys can
//! be rotated while old records stay readable.
//!
//! A sealed record is `[1][version: u32 BE][nonce: 12 bytes][ciphertext + tag]`. The associated
//! data binds it to its KV key and key version (`hookyard.token.v1|<context>|<version>`), so a
//! record copied under another connection's key, or relabelled with another version, fails to
//! open instead of decrypting to someone else's token.

use std::collections::BTreeMap;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::Engine as _;

/// Format byte of a sealed record.
const FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;

/// The token encryption keys: the current one (highest version) seals, every one opens.
pub struct Keys {
    current: u32,
    ciphers: BTreeMap<u32, Aes256Gcm>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Versions only: key material never prints.
        f.debug_struct("Keys")
            .field("current", &self.current)
            .field("versions", &self.ciphers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a key list is invalid. Messages name the entry, never its value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// No key at all.
    #[error("no token key given: set HOOKYARD_TOKEN_KEYS or --token-key-file")]
    Empty,
    /// An entry is not `<version>:<base64 of 32 bytes>`.
    #[error(
        "token key entry {entry} is invalid: {reason} (expected <version>:<base64 of 32 bytes>)"
    )]
    Entry {
        /// 1-based position of the entry.
        entry: usize,
        /// What is wrong (never the value).
        reason: &'static str,
    },
    /// Two entries have the same version.
    #[error("token key version {0} is given twice")]
    Duplicate(u32),
}

/// Why a sealed record cannot be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// Too short or of an unknown format.
    #[error("record is not a sealed token record")]
    Malformed,
    /// Sealed with a key version that is not configured.
    #[error("record is sealed with key version {0}, which is not configured")]
    UnknownVersion(u32),
    /// The key of that version does not open it: a wrong key, or a record that was made for
    /// another connection or altered.
    #[error(
        "record does not open with key version {0} (wrong key, or a record made for another key or altered)"
    )]
    Rejected(u32),
}

impl Keys {
    /// Parses `<version>:<base64>` entries separated by commas or newlines; blank lines and
    /// lines starting with `#` are skipped. The highest version is the current key.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut ciphers = BTreeMap::new();
        let entries = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (n, entry) in entries.enumerate() {
            let invalid = |reason| KeyError::Entry {
                entry: n + 1,
                reason,
            };
            let (version, key) = entry.split_once(':').ok_or(invalid("no ':'"))?;
            let version: u32 = version
                .trim()
                .trim_start_matches(['v', 'V'])
                .parse()
                .map_err(|_| invalid("version is not a number"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|_| invalid("key is not base64"))?;
            let cipher =
                Aes256Gcm::new_from_slice(&bytes).map_err(|_| invalid("key is not 32 bytes"))?;
            if ciphers.insert(version, cipher).is_some() {
                return Err(KeyError::Duplicate(version));
            }
        }
        let current = *ciphers.keys().next_back().ok_or(KeyError::Empty)?;
        Ok(Self { current, ciphers })
    }

    /// Version of the key new records are sealed with.
    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// Encrypts `plain` for `context` (the KV key it is stored under) with the current key.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // A nonce must never repeat under one key; 96 random bits are safe for far more
        // records than a token store writes.
        getrandom::fill(&mut nonce).expect("the operating system provides random bytes");
        let cipher = &self.ciphers[&self.current];
        let aad = aad(context, self.current);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encrypts any record of a token store's size");
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(FORMAT);
        out.extend_from_slice(&self.current.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a record sealed for `context`; returns the plaintext and the key version.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<(Vec<u8>, u32), OpenError> {
        if sealed.len() < HEADER_LEN + 16 || sealed[0] != FORMAT {
            return Err(OpenError::Malformed);
        }
        let version = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]);
        let cipher = self
            .ciphers
            .get(&version)
            .ok_or(OpenError::UnknownVersion(version))?;
        let aad = aad(context, version);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&sealed[5..HEADER_LEN]),
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Rejected(version))?;
        Ok((plain, version))
    }
}

fn aad(context: &str, version: u32) -> String {
    format!("hookyard.token.v1|{context}|{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    #[test]
    fn highest_version_is_current_and_every_version_opens() {
        let old = Keys::parse(&format!("1:{}", key(1))).expect("keys");
        let sealed = old.seal("token.erp", b"secret");
        let both = Keys::parse(&format!("# rotated\n2:{}\nv1:{}\n", key(2), key(1))).expect("keys");
        assert_eq!(both.current_version(), 2);
        assert_eq!(both.open("token.erp", &sealed), Ok((b"secret".to_vec(), 1)));
        let resealed = both.seal("token.erp", b"secret");
        assert_eq!(both.open("token.erp", &resealed).map(|r| r.1), Ok(2));
        assert_eq!(
            old.open("token.erp", &resealed),
            Err(OpenError::UnknownVersion(2))
        );
    }

    #[test]
    fn another_context_or_key_or_tampering_is_rejected() {
        let keys = Keys::parse(&format!("1:{}", key(1))).expect("keys");
        let sealed = keys.seal("token.a", b"secret");
        assert_eq!(keys.open("token.b", &sealed), Err(OpenError::Rejected(1)));
        let wrong = Keys::parse(&format!("1:{}", key(9))).expect("keys");
        assert_eq!(wrong.open("token.a", &sealed), Err(OpenError::Rejected(1)));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(keys.open("token.a", &tampered), Err(OpenError::Rejected(1)));
        assert_eq!(keys.open("token.a", b"short"), Err(OpenError::Malformed));
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn invalid_entries_are_named_without_their_value() {
        assert_eq!(Keys::parse(" \n# none\n").err(), Some(KeyError::Empty));
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        let err = Keys::parse(&format!("1:{},2:{short}", key(1))).expect_err("short key");
        assert_eq!(
            err,
            KeyError::Entry {
                entry: 2,
                reason: "key is not 32 bytes"
            }
        );
        assert!(!err.to_string().contains(&short));
        assert_eq!(
            Keys::parse(&format!("1:{},1:{}", key(1), key(2))).err(),
            Some(KeyError::Duplicate(1))
        );
        assert!(matches!(
            Keys::parse("x:abc"),
            Err(KeyError::Entry { entry: 1, .. })
        ));
    }
}
