//! The gRPC face of the token service: `hookyard.token.v1.TokenService`.

use hookyard_proto::token::v1::{
    GetTokenRequest, GetTokenResponse, InvalidateTokenRequest, InvalidateTokenResponse,
    token_service_server::TokenService,
};
use secrecy::ExposeSecret;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{live::Live, metrics::Metrics};

/// Serves tokens from the cache.
pub(crate) struct TokenApi {
    tokens: Arc<Live>,
    metrics: Arc<Metrics>,
}

impl TokenApi {
    pub(crate) fn new(tokens: Arc<Live>, metrics: Arc<Metrics>) -> Self {
        Self { tokens, metrics }
    }
}

#[tonic::async_trait]
impl TokenService for TokenApi {
    async fn get_token(
        &self,
        request: Request<GetTokenRequest>,
    ) -> Result<Response<GetTokenResponse>, Status> {
        let connection = request.into_inner().connection;
        let result = self.tokens.current().get(&connection).await;
        let code = result
            .as_ref()
            .map_or_else(|e| Status::from(&**e).code(), |_| tonic::Code::Ok);
        // An unknown name is a caller's value, not configuration: it must not become a label.
        let label = if code == tonic::Code::NotFound {
            ""
        } else {
            connection.as_str()
        };
        self.metrics.request(label, code);
        match result {
            Ok(token) => Ok(Response::new(GetTokenResponse {
                access_token: token.access_token.expose_secret().to_owned(),
                token_type: token.token_type,
                expires_at_ms: token.expires_at_ms,
            })),
            Err(error) => {
                let status = Status::from(&*error);
                tracing::warn!(
                    connection,
                    code = ?status.code(),
                    error = error.chain(),
                    "cannot provide a token"
                );
                Err(status)
            }
        }
    }

    async fn invalidate_token(
        &self,
        request: Request<InvalidateTokenRequest>,
    ) -> Result<Response<InvalidateTokenResponse>, Status> {
        let InvalidateTokenRequest {
            connection,
            access_token,
        } = request.into_inner();
        let invalidated = self
            .tokens
            .current()
            .invalidate(&connection, &access_token)
            .await
            .map_err(|e| Status::from(&e))?;
        tracing::debug!(connection, invalidated, "token invalidation requested");
        Ok(Response::new(InvalidateTokenResponse { invalidated }))
    }
}
