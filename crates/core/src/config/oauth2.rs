//! OAuth 2.0 client settings of connections: the `private_key_jwt` signing key, and the
//! checks of `oauth2_client_credentials` and `oauth2_authorization_code` auth.

use serde::Deserialize;

use super::{ClientAuth, ConnectionAuth, Secret};

/// Client authentication with a signed JWT (RFC 7523 §2.2, OpenID Connect `private_key_jwt`):
/// `iss` and `sub` are the client id, `aud` the token endpoint, with a unique `jti` and a
/// lifetime of 60 s.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateKeyJwt {
    /// PEM private key (PKCS#8; PKCS#1 also for RSA) as a secret reference.
    pub key: Secret,
    /// Signature algorithm: `RS256` (default) or `ES256`.
    #[serde(default)]
    pub alg: SigningAlg,
    /// `kid` header, when the server needs it to pick the key (default none).
    #[serde(default)]
    pub key_id: Option<String>,
    /// `aud` claim (default: the connection's `token_url`; some servers want their issuer URL).
    #[serde(default)]
    pub audience: Option<String>,
}

/// Signature algorithm of a client assertion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[default]
    RS256,
    /// ECDSA with P-256 and SHA-256.
    ES256,
}

/// The client authentication fields of an OAuth 2.0 connection auth, if it is one.
pub fn client_of(
    auth: &ConnectionAuth,
) -> Option<(ClientAuth, Option<&Secret>, Option<&PrivateKeyJwt>)> {
    match auth {
        ConnectionAuth::OAuth2ClientCredentials {
            client_auth,
            client_secret,
            private_key_jwt,
            ..
        }
        | ConnectionAuth::OAuth2AuthorizationCode {
            client_auth,
            client_secret,
            private_key_jwt,
            ..
        } => Some((
            *client_auth,
            client_secret.as_ref(),
            private_key_jwt.as_ref(),
        )),
        _ => None,
    }
}

/// Checks that the client authentication of an OAuth 2.0 auth has what it needs; `push`
/// receives the key and the problem.
pub(super) fn check_client(push: &mut dyn FnMut(String, String), key: &str, auth: &ConnectionAuth) {
    let Some((client_auth, secret, jwt)) = client_of(auth) else {
        return;
    };
    match client_auth {
        ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost => {
            if secret.is_none() {
                push(
                    format!("{key}.client_secret"),
                    "is required with client_secret_basic and client_secret_post".to_owned(),
                );
            }
            if jwt.is_some() {
                push(
                    format!("{key}.private_key_jwt"),
                    "is used only with client_auth = \"private_key_jwt\"".to_owned(),
                );
            }
        }
        ClientAuth::PrivateKeyJwt => {
            if jwt.is_none() {
                push(
                    format!("{key}.private_key_jwt"),
                    "is required with client_auth = \"private_key_jwt\", e.g. { key = \"${file:/run/secrets/key.pem}\" }".to_owned(),
                );
            }
            if secret.is_some() {
                push(
                    format!("{key}.client_secret"),
                    "is not sent with client_auth = \"private_key_jwt\"; remove it".to_owned(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConnectionAuth, Integration, SigningAlg};

    fn parse(auth: &str) -> Result<Integration, Vec<String>> {
        let text = format!(
            "[connections.erp]\nbase_url = \"https://erp.example\"\n[connections.erp.auth]\n{auth}"
        );
        Integration::parse(&text, &|_| Some("x".to_owned()))
            .map_err(|e| e.problems().iter().map(|p| p.key.clone()).collect())
    }

    const CC: &str = "type = \"oauth2_client_credentials\"\ntoken_url = \"https://as.example/token\"\nclient_id = \"c\"\n";

    #[test]
    fn private_key_jwt_needs_its_key_and_no_secret() {
        let jwt = format!(
            "{CC}client_auth = \"private_key_jwt\"\nprivate_key_jwt = {{ key = \"${{env:K}}\", alg = \"ES256\", key_id = \"k1\" }}\naudience = \"api\"\nextra_params = {{ resource = \"r\" }}\n"
        );
        let i = parse(&jwt).expect("valid");
        let ConnectionAuth::OAuth2ClientCredentials {
            private_key_jwt: Some(jwt),
            extra_params,
            ..
        } = &i.connections["erp"].auth
        else {
            panic!("private_key_jwt");
        };
        assert_eq!(jwt.alg, SigningAlg::ES256);
        assert_eq!(jwt.key.expose(), "x");
        assert_eq!(extra_params["resource"], "r");

        assert_eq!(
            parse(&format!("{CC}client_auth = \"private_key_jwt\"\n")).err(),
            Some(vec!["connections.erp.auth.private_key_jwt".to_owned()])
        );
        assert_eq!(
            parse(CC).err(),
            Some(vec!["connections.erp.auth.client_secret".to_owned()])
        );
        let both = format!(
            "{CC}client_auth = \"private_key_jwt\"\nclient_secret = \"${{env:S}}\"\nprivate_key_jwt = {{ key = \"${{env:K}}\" }}\n"
        );
        assert_eq!(
            parse(&both).err(),
            Some(vec!["connections.erp.auth.client_secret".to_owned()])
        );
    }

    #[test]
    fn authorization_code_redirect_uri_must_be_the_consent_callback() {
        let code = |redirect: &str| {
            format!(
                "type = \"oauth2_authorization_code\"\nauthorize_url = \"https://as.example/authorize\"\ntoken_url = \"https://as.example/token\"\nclient_id = \"c\"\nclient_secret = \"${{env:S}}\"\nredirect_uri = \"{redirect}\"\n"
            )
        };
        assert!(parse(&code("https://hookyard.example/oauth/callback")).is_ok());
        assert!(parse(&code("https://hookyard.example/prefix/oauth/callback")).is_ok());
        for bad in [
            "https://hookyard.example/oauth/callback/",
            "https://hookyard.example/callback",
            "https://hookyard.example/oauth/callback?x=1",
            "not a url",
        ] {
            assert_eq!(
                parse(&code(bad)).err(),
                Some(vec!["connections.erp.auth.redirect_uri".to_owned()]),
                "{bad}"
            );
        }
    }
}
