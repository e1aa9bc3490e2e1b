//! `private_key_jwt` client authentication (RFC 7523 §2.2, RFC 7521 §4.2): a short-lived JWT
//! signed with the client's private key, sent as `client_assertion` with every token request.

use hookyard_core::config::{PrivateKeyJwt, SigningAlg};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::{Error, store::random_id};

/// `client_assertion_type` of a JWT client assertion.
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: long enough for one request, short enough to be useless
/// if it leaks.
const LIFETIME_SECS: u64 = 60;

/// Signs client assertions for one connection.
pub(crate) struct Signer {
    key: EncodingKey,
    header: Header,
    client_id: String,
    audience: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

impl Signer {
    /// A signer with the PEM key of `jwt`; the audience defaults to `token_url`.
    pub(crate) fn new(
        connection: &str,
        jwt: &PrivateKeyJwt,
        client_id: &str,
        token_url: &str,
    ) -> Result<Self, Error> {
        let pem = jwt.key.expose().as_bytes();
        let (key, algorithm) = match jwt.alg {
            SigningAlg::RS256 => (EncodingKey::from_rsa_pem(pem), Algorithm::RS256),
            SigningAlg::ES256 => (EncodingKey::from_ec_pem(pem), Algorithm::ES256),
        };
        // The parse error is not kept: it could quote the key.
        let key = key.map_err(|_| Error::PrivateKey(connection.to_owned()))?;
        let mut header = Header::new(algorithm);
        header.kid.clone_from(&jwt.key_id);
        let signer = Self {
            key,
            header,
            client_id: client_id.to_owned(),
            audience: jwt.audience.clone().unwrap_or_else(|| token_url.to_owned()),
        };
        // Signing once at start turns a key that does not fit the algorithm into a config error.
        signer
            .assertion()
            .map_err(|_| Error::PrivateKey(connection.to_owned()))?;
        Ok(signer)
    }

    /// A fresh assertion: `iss` = `sub` = client id, `aud`, a unique `jti`, `iat`, `exp`.
    pub(crate) fn assertion(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: &self.client_id,
            sub: &self.client_id,
            aud: &self.audience,
            jti: random_id(16),
            iat: now,
            exp: now + LIFETIME_SECS,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
    }
}
