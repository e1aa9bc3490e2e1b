//! The OAuth 2.0 grants of one connection through the `oauth2` crate: client credentials
//! (RFC 6749 §4.4), authorization code with PKCE (§4.1, RFC 7636) and refresh (§6), over an
//! HTTP client that tells "try later" answers (5xx, 408, 429) apart from refusals before
//! `oauth2` parses the body.

use std::{collections::BTreeMap, time::Duration};
use tracing::Instrument as _;

use hookyard_core::config::{ClientAuth, ConnectionAuth, Secret, oauth2::client_of};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
    basic::{BasicClient, BasicTokenResponse, BasicTokenType},
};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};

use crate::{
    Error,
    assertion::{ASSERTION_TYPE, Signer},
};

/// How long one token request may take, connect to last byte.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest token endpoint response read; real ones are a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

type OAuthClient =
    BasicClient<EndpointMaybeSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// A token as the authorization server issued it.
pub(crate) struct Issued {
    pub access_token: SecretString,
    pub token_type: String,
    pub expires_in: Option<Duration>,
    /// A refresh token, when the server sent one (on a refresh: a rotated one).
    pub refresh_token: Option<SecretString>,
}

/// Which grant a connection uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    ClientCredentials,
    AuthorizationCode {
        /// Expected `iss` of callbacks (RFC 9207), when configured.
        issuer: Option<String>,
    },
}

/// The OAuth 2.0 client of one connection.
pub(crate) struct Grant {
    connection: String,
    client: OAuthClient,
    scopes: Vec<Scope>,
    http: reqwest::Client,
    kind: Kind,
    /// Signs client assertions when the client authenticates with `private_key_jwt`.
    signer: Option<Signer>,
    /// `audience` and `extra_params`, sent with every token request.
    extra: Vec<(String, String)>,
}

/// The HTTP client of a connection's token requests: the same SSRF guard, TLS settings
/// (trusted CAs, client certificate) and no proxy as egress's client of that connection, so an
/// authorization server is reached only where the connection may reach.
pub(crate) fn http_client(
    name: &str,
    connection: &hookyard_core::config::Connection,
) -> Result<reqwest::Client, Error> {
    let guard = hookyard_outbound::client::guard(connection)
        .ok_or_else(|| Error::AllowPrivate(name.to_owned()))?;
    // A token URL naming an address is checked here, once; a name is checked on every lookup
    // by the client's resolver.
    if let Some(url) = connection
        .auth
        .token_url()
        .and_then(|text| url::Url::parse(text).ok())
    {
        guard
            .check_url(&url)
            .map_err(|refusal| Error::TokenUrlRefused {
                connection: name.to_owned(),
                reason: refusal.reason,
            })?;
    }
    hookyard_outbound::client::builder(name, connection, guard)?
        // oauth2 advises against following redirects: they could carry the credentials elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(Error::HttpClient)
}

/// The settings both OAuth 2.0 auth kinds share, so a grant is built the same way from either.
struct Endpoint<'a> {
    token_url: &'a str,
    client_id: &'a str,
    scopes: &'a [String],
    extra_params: &'a BTreeMap<String, String>,
    kind: Kind,
}

impl<'a> Endpoint<'a> {
    /// The shared settings of `auth`, or `None` when it is not OAuth 2.0.
    fn of(auth: &'a ConnectionAuth) -> Option<Self> {
        match auth {
            ConnectionAuth::OAuth2ClientCredentials {
                token_url,
                client_id,
                scopes,
                extra_params,
                ..
            } => Some(Self {
                token_url,
                client_id,
                scopes,
                extra_params,
                kind: Kind::ClientCredentials,
            }),
            ConnectionAuth::OAuth2AuthorizationCode {
                token_url,
                client_id,
                scopes,
                issuer,
                extra_params,
                ..
            } => Some(Self {
                token_url,
                client_id,
                scopes,
                extra_params,
                kind: Kind::AuthorizationCode {
                    issuer: issuer.clone(),
                },
            }),
            _ => None,
        }
    }
}

/// The parameters sent with every token request: `extra_params`, then `audience` (client
/// credentials only), computed once as they never change while the grant lives.
fn extra_params(
    auth: &ConnectionAuth,
    extra_params: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut extra: Vec<(String, String)> = extra_params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let ConnectionAuth::OAuth2ClientCredentials {
        audience: Some(audience),
        ..
    } = auth
    {
        extra.push(("audience".to_owned(), audience.clone()));
    }
    extra
}

/// The `oauth2` client of a connection: its token endpoint and client authentication and,
/// for the authorization code grant, where consent starts and returns to. A client secret is
/// never set with `private_key_jwt`, which authenticates by assertion instead.
fn oauth_client(
    connection: &str,
    auth: &ConnectionAuth,
    endpoint: &Endpoint<'_>,
    client_auth: ClientAuth,
    client_secret: Option<&Secret>,
) -> Result<OAuthClient, Error> {
    let url_error = |field| {
        move |source| Error::Url {
            connection: connection.to_owned(),
            field,
            source,
        }
    };
    let token_url = TokenUrl::new(endpoint.token_url.to_owned()).map_err(url_error("token_url"))?;
    let auth_type = match client_auth {
        ClientAuth::ClientSecretBasic => AuthType::BasicAuth,
        // Without a secret, oauth2 sends only `client_id` in the body, beside the assertion.
        ClientAuth::ClientSecretPost | ClientAuth::PrivateKeyJwt => AuthType::RequestBody,
    };
    let mut client = BasicClient::new(ClientId::new(endpoint.client_id.to_owned()))
        .set_token_uri(token_url)
        .set_auth_uri_option(None)
        .set_auth_type(auth_type);
    if let (Some(secret), false) = (client_secret, client_auth == ClientAuth::PrivateKeyJwt) {
        client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
    }
    if let ConnectionAuth::OAuth2AuthorizationCode {
        authorize_url,
        redirect_uri,
        ..
    } = auth
    {
        let auth_url = AuthUrl::new(authorize_url.clone()).map_err(url_error("authorize_url"))?;
        let redirect = RedirectUrl::new(redirect_uri.clone()).map_err(url_error("redirect_uri"))?;
        client = client
            .set_auth_uri_option(Some(auth_url))
            .set_redirect_uri(redirect);
    }
    Ok(client)
}

impl Grant {
    /// The grant for `connection`, or `None` when it does not use OAuth 2.0.
    pub(crate) fn new(
        connection: &str,
        auth: &ConnectionAuth,
        http: reqwest::Client,
    ) -> Result<Option<Self>, Error> {
        let Some(endpoint) = Endpoint::of(auth) else {
            return Ok(None);
        };
        let Some((client_auth, client_secret, jwt)) = client_of(auth) else {
            return Ok(None);
        };
        let extra = extra_params(auth, endpoint.extra_params);
        let signer = match (client_auth, jwt) {
            (ClientAuth::PrivateKeyJwt, Some(jwt)) => Some(Signer::new(
                connection,
                jwt,
                endpoint.client_id,
                endpoint.token_url,
            )?),
            _ => None,
        };
        let client = oauth_client(connection, auth, &endpoint, client_auth, client_secret)?;
        Ok(Some(Self {
            connection: connection.to_owned(),
            client,
            scopes: endpoint.scopes.iter().cloned().map(Scope::new).collect(),
            http,
            kind: endpoint.kind,
            signer,
            extra,
        }))
    }

    /// Parameters added to every token request: `audience`, `extra_params` and, with
    /// `private_key_jwt`, a fresh client assertion.
    fn params(&self) -> Result<Vec<(String, String)>, Error> {
        let mut params = self.extra.clone();
        if let Some(signer) = &self.signer {
            let assertion = signer
                .assertion()
                .map_err(|_| Error::PrivateKey(self.connection.clone()))?;
            params.push((
                "client_assertion_type".to_owned(),
                ASSERTION_TYPE.to_owned(),
            ));
            params.push(("client_assertion".to_owned(), assertion));
        }
        Ok(params)
    }

    /// The connection's name.
    pub(crate) fn connection(&self) -> &str {
        &self.connection
    }

    /// Which grant this is.
    pub(crate) fn kind(&self) -> &Kind {
        &self.kind
    }

    /// Asks the authorization server for a new token with the client credentials grant.
    pub(crate) async fn request(&self) -> Result<Issued, Error> {
        let http = |request: HttpRequest| send(self.http.clone(), request);
        let mut request = self
            .client
            .exchange_client_credentials()
            .add_scopes(self.scopes.iter().cloned());
        for (name, value) in self.params()? {
            request = request.add_extra_param(name, value);
        }
        let response = request
            .request_async(&http)
            .await
            .map_err(|e| self.error(e))?;
        Ok(issued(&response))
    }

    /// Exchanges a refresh token for new tokens (RFC 6749 §6), without narrowing the scope.
    pub(crate) async fn refresh(&self, refresh_token: &str) -> Result<Issued, Error> {
        let http = |request: HttpRequest| send(self.http.clone(), request);
        let token = RefreshToken::new(refresh_token.to_owned());
        let mut request = self.client.exchange_refresh_token(&token);
        for (name, value) in self.params()? {
            request = request.add_extra_param(name, value);
        }
        let response = request
            .request_async(&http)
            .await
            .map_err(|e| self.error(e))?;
        Ok(issued(&response))
    }

    /// The authorization URL for a consent with `state`, and the PKCE verifier to keep for the
    /// callback (S256 challenge, RFC 7636).
    pub(crate) fn authorize(&self, state: &str) -> Option<(url::Url, PkceCodeVerifier)> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let (url, _) = self
            .client
            .authorize_url(move || CsrfToken::new(state))
            .ok()?
            .add_scopes(self.scopes.iter().cloned())
            .set_pkce_challenge(challenge)
            .url();
        Some((url, verifier))
    }

    /// Exchanges an authorization code, proving possession with the PKCE verifier; the
    /// registered redirect URI is sent with it, as the server compares it.
    pub(crate) async fn exchange(
        &self,
        code: &str,
        verifier: &SecretString,
    ) -> Result<Issued, Error> {
        let http = |request: HttpRequest| send(self.http.clone(), request);
        let mut request = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose_secret().to_owned()));
        for (name, value) in self.params()? {
            request = request.add_extra_param(name, value);
        }
        let response = request
            .request_async(&http)
            .await
            .map_err(|e| self.error(e))?;
        Ok(issued(&response))
    }

    fn error(
        &self,
        error: RequestTokenError<Transport, oauth2::basic::BasicErrorResponse>,
    ) -> Error {
        let connection = self.connection.clone();
        match error {
            RequestTokenError::ServerResponse(response) => Error::Refused {
                connection,
                code: sanitise_code(response.error().as_ref()),
            },
            RequestTokenError::Request(Transport::Send(source)) => {
                Error::Unreachable { connection, source }
            }
            RequestTokenError::Request(Transport::Unavailable(status)) => Error::ServerStatus {
                connection,
                status: status.as_u16(),
            },
            RequestTokenError::Request(Transport::Refused(status)) => Error::RefusedStatus {
                connection,
                status: status.as_u16(),
            },
            RequestTokenError::Request(Transport::TooLarge) => Error::MalformedResponse {
                connection,
                reason: "response too large",
            },
            RequestTokenError::Request(Transport::Http(_)) => Error::MalformedResponse {
                connection,
                reason: "invalid HTTP response",
            },
            // The parse error and the body may quote the token: neither is passed on.
            RequestTokenError::Parse(..) => Error::MalformedResponse {
                connection,
                reason: "not the JSON of a token response",
            },
            RequestTokenError::Other(_) => Error::MalformedResponse {
                connection,
                reason: "not a JSON body",
            },
        }
    }
}

fn issued(response: &BasicTokenResponse) -> Issued {
    let token_type = match response.token_type() {
        BasicTokenType::Bearer => "Bearer".to_owned(),
        other => other.as_ref().to_owned(),
    };
    Issued {
        access_token: SecretString::from(response.access_token().secret().to_owned()),
        token_type,
        expires_in: response.expires_in(),
        refresh_token: response
            .refresh_token()
            .map(|t| SecretString::from(t.secret().to_owned())),
    }
}

/// Why the HTTP exchange with the authorization server gave no response for `oauth2` to parse.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Transport {
    #[error("request failed")]
    Send(#[source] reqwest::Error),
    #[error("authorization server answered HTTP {0}")]
    Unavailable(StatusCode),
    #[error("authorization server answered HTTP {0} without an OAuth 2.0 error")]
    Refused(StatusCode),
    #[error("response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("invalid HTTP response")]
    Http(#[source] oauth2::http::Error),
}

async fn send(client: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, Transport> {
    // Errors lose their URL: a token URL is no secret, but nothing here needs it either.
    let request =
        reqwest::Request::try_from(request).map_err(|e| Transport::Send(e.without_url()))?;
    let span = tracing::info_span!("fetch", http.response.status_code = tracing::field::Empty);
    let mut response = client
        .execute(request)
        .instrument(span.clone())
        .await
        .map_err(|e| Transport::Send(e.without_url()))?;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        return Err(Transport::Unavailable(status));
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_RESPONSE_BYTES as u64)
    {
        return Err(Transport::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Transport::Send(e.without_url()))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(Transport::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() && !is_oauth_error(&body) {
        return Err(Transport::Refused(status));
    }
    let mut builder = oauth2::http::Response::builder().status(status.as_u16());
    for (name, value) in response.headers() {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    builder.body(body).map_err(Transport::Http)
}

/// Whether `body` is an RFC 6749 §5.2 error response (a JSON object with a string `error`).
fn is_oauth_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v.get("error").is_some_and(serde_json::Value::is_string))
}

/// Keeps an RFC 6749 error code printable and short; anything else is replaced, as the code is
/// put into messages and logs.
pub(crate) fn sanitise_code(code: &str) -> String {
    let clean = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if clean {
        code.to_owned()
    } else {
        "(unrecognised error code)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_kept_when_plain_and_replaced_otherwise() {
        assert_eq!(sanitise_code("invalid_client"), "invalid_client");
        assert_eq!(sanitise_code("invalid_scope"), "invalid_scope");
        for bad in ["", "bad code", "x\r\ny", &"a".repeat(65), "sëcret"] {
            assert_eq!(sanitise_code(bad), "(unrecognised error code)", "{bad:?}");
        }
    }
}
