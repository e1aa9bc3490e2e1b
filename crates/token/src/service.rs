//! The gRPC face of the token service: `hookyard.token.v1.TokenService`.

use hookyard_proto::token::v1::{
    GetConsentStateRequest, GetConsentStateResponse, GetTokenRequest, GetTokenResponse,
    InvalidateTokenRequest, InvalidateTokenResponse, token_service_server::TokenService,
};
use secrecy::ExposeSecret;
use std::sync::Arc;
use tracing::Instrument as _;

use tonic::{Request, Response, Status};

use crate::{
    consent::{self, Standing},
    grant::Kind,
    live::Live,
    metrics::Metrics,
};

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
        let parent = hookyard_core::trace::from_grpc(&request);
        let connection = request.into_inner().connection;
        // Egress's call is the parent; a request to the authorization server is a child span.
        let span = tracing::info_span!(
            "token",
            connection = %connection,
            outcome = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        hookyard_core::trace::adopt(&span, parent);
        let result = self
            .tokens
            .current()
            .get(&connection)
            .instrument(span.clone())
            .await;
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
        span.record("outcome", tracing::field::debug(code));
        let _in_token = span.enter();
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

    async fn get_consent_state(
        &self,
        request: Request<GetConsentStateRequest>,
    ) -> Result<Response<GetConsentStateResponse>, Status> {
        let connection = request.into_inner().connection;
        let tokens = self.tokens.current();
        let is_consented = tokens
            .grant(&connection)
            .is_ok_and(|g| matches!(g.kind(), Kind::AuthorizationCode { .. }));
        if !is_consented {
            return Err(Status::not_found(
                "no oauth2_authorization_code connection of that name",
            ));
        }
        let Some(store) = tokens.store() else {
            return Err(Status::failed_precondition(
                "the token service keeps no token store, which consent needs",
            ));
        };
        let answer = match consent::standing(store, &connection).await {
            Standing::Connected { expires_at_ms } => GetConsentStateResponse {
                state: "connected".to_owned(),
                expires_at_ms,
                detail: String::new(),
            },
            Standing::NeedsConsent => GetConsentStateResponse {
                state: "needs_consent".to_owned(),
                ..GetConsentStateResponse::default()
            },
            Standing::Broken(why) => GetConsentStateResponse {
                state: "broken".to_owned(),
                detail: why,
                ..GetConsentStateResponse::default()
            },
        };
        Ok(Response::new(answer))
    }
}
