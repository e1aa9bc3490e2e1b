//! The OAuth 2.0 client credentials grant (RFC 6749 §4.4) for one connection, through the
//! `oauth2` crate, over an HTTP client that tells "try later" answers (5xx, 408, 429) apart from
//! refusals before `oauth2` parses the body.

use std::time::Duration;

use hookyard_core::config::{ClientAuth, ConnectionAuth};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse,
    RequestTokenError, Scope, TokenResponse, TokenUrl,
    basic::{BasicClient, BasicTokenType},
};
use reqwest::StatusCode;
use secrecy::SecretString;

use crate::Error;

/// How long one token request may take, connect to last byte.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest token endpoint response read; real ones are a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

type OAuthClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// A token as the authorization server issued it.
pub(crate) struct Issued {
    pub access_token: SecretString,
    pub token_type: String,
    pub expires_in: Option<Duration>,
}

/// The client credentials grant of one connection.
pub(crate) struct Grant {
    connection: String,
    client: OAuthClient,
    scopes: Vec<Scope>,
    http: reqwest::Client,
}

/// The HTTP client for authorization servers, shared by every connection.
pub(crate) fn http_client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        // oauth2 advises against following redirects: they could carry the credentials elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(Error::HttpClient)
}

impl Grant {
    /// The grant for `connection`, or `None` when it does not use the client credentials grant.
    pub(crate) fn new(
        connection: &str,
        auth: &ConnectionAuth,
        http: reqwest::Client,
    ) -> Result<Option<Self>, Error> {
        let ConnectionAuth::OAuth2ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scopes,
            client_auth,
        } = auth
        else {
            return Ok(None);
        };
        let token_url = TokenUrl::new(token_url.clone()).map_err(|source| Error::TokenUrl {
            connection: connection.to_owned(),
            source,
        })?;
        let auth_type = match client_auth {
            ClientAuth::ClientSecretBasic => AuthType::BasicAuth,
            ClientAuth::ClientSecretPost => AuthType::RequestBody,
        };
        let client = BasicClient::new(ClientId::new(client_id.clone()))
            .set_client_secret(ClientSecret::new(client_secret.expose().to_owned()))
            .set_token_uri(token_url)
            .set_auth_type(auth_type);
        Ok(Some(Self {
            connection: connection.to_owned(),
            client,
            scopes: scopes.iter().cloned().map(Scope::new).collect(),
            http,
        }))
    }

    /// Asks the authorization server for a new token.
    pub(crate) async fn request(&self) -> Result<Issued, Error> {
        let http = |request: HttpRequest| send(self.http.clone(), request);
        let response = self
            .client
            .exchange_client_credentials()
            .add_scopes(self.scopes.iter().cloned())
            .request_async(&http)
            .await
            .map_err(|e| self.error(e))?;
        let token_type = match response.token_type() {
            BasicTokenType::Bearer => "Bearer".to_owned(),
            other => other.as_ref().to_owned(),
        };
        Ok(Issued {
            access_token: SecretString::from(response.access_token().secret().to_owned()),
            token_type,
            expires_in: response.expires_in(),
        })
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
    let mut response = client
        .execute(request)
        .await
        .map_err(|e| Transport::Send(e.without_url()))?;
    let status = response.status();
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
fn sanitise_code(code: &str) -> String {
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
