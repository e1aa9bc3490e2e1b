//! Bearer tokens for `oauth2_client_credentials` connections, asked of the token service on
//! every call. Egress keeps no token beyond the call that uses it: caching, expiry and single
//! flight are the token service's.

use std::time::Duration;

use hookyard_proto::token::v1::{
    GetTokenRequest, InvalidateTokenRequest, token_service_client::TokenServiceClient,
};
use secrecy::{ExposeSecret, SecretString};
use tonic::transport::{Channel, Endpoint};

use crate::{Error, connection::Connections};

/// Bounds one token service RPC, including a wait for a token request to the authorization
/// server (itself bounded at 10 s there) that other callers started.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of the token service; it connects on first use and reconnects by itself.
pub(crate) struct TokenClient {
    client: Option<TokenServiceClient<Channel>>,
}

impl TokenClient {
    /// A client for `endpoint`; without one, start fails when a connection needs tokens.
    pub(crate) fn new(endpoint: Option<&str>, connections: &Connections) -> Result<Self, Error> {
        let Some(endpoint) = endpoint else {
            if let Some(name) = connections.oauth2().next() {
                return Err(Error::NoTokenEndpoint(name.to_owned()));
            }
            return Ok(Self { client: None });
        };
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|source| Error::TokenEndpoint {
                endpoint: endpoint.to_owned(),
                source,
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(RPC_TIMEOUT)
            .connect_lazy();
        Ok(Self {
            client: Some(TokenServiceClient::new(channel)),
        })
    }

    fn client(&self, connection: &str) -> Result<TokenServiceClient<Channel>, Error> {
        self.client
            .clone()
            .ok_or_else(|| Error::NoTokenEndpoint(connection.to_owned()))
    }

    /// A valid access token for `connection`.
    pub(crate) async fn get(&self, connection: &str) -> Result<SecretString, Error> {
        let mut request = tonic::Request::new(GetTokenRequest {
            connection: connection.to_owned(),
        });
        hookyard_core::trace::to_grpc(&tracing::Span::current(), &mut request);
        let response = self
            .client(connection)?
            .get_token(request)
            .await
            .map_err(|status| Error::Token {
                connection: connection.to_owned(),
                status,
            })?;
        Ok(SecretString::from(response.into_inner().access_token))
    }

    /// Tells the token service that a partner refused `token`.
    pub(crate) async fn invalidate(
        &self,
        connection: &str,
        token: &SecretString,
    ) -> Result<(), Error> {
        let response = self
            .client(connection)?
            .invalidate_token(InvalidateTokenRequest {
                connection: connection.to_owned(),
                access_token: token.expose_secret().to_owned(),
            })
            .await
            .map_err(|status| Error::Token {
                connection: connection.to_owned(),
                status,
            })?;
        tracing::debug!(
            connection,
            invalidated = response.into_inner().invalidated,
            "token invalidated after a 401"
        );
        Ok(())
    }
}
