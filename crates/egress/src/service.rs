//! The gRPC face of egress: `hookyard.egress.v1.EgressService`.

use hookyard_proto::egress::v1::{CallRequest, CallResponse, egress_service_server::EgressService};
use tonic::{Request, Response, Status};

use crate::{call, connection::Connections, token::Tokens};

/// Makes partner calls on the configured connections.
pub(crate) struct EgressApi {
    connections: Connections,
    tokens: Tokens,
}

impl EgressApi {
    pub(crate) fn new(connections: Connections, tokens: Tokens) -> Self {
        Self {
            connections,
            tokens,
        }
    }
}

#[tonic::async_trait]
impl EgressService for EgressApi {
    async fn call(&self, request: Request<CallRequest>) -> Result<Response<CallResponse>, Status> {
        let call = request.into_inner();
        let name = call.connection.clone();
        let method = call.method.clone();
        let outcome = match self.connections.get(&name) {
            Ok(connection) => call::perform(connection, &self.tokens, call).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(response) => {
                tracing::info!(
                    connection = name,
                    method,
                    status = response.status,
                    attempts = response.attempts,
                    "partner call made"
                );
                Ok(Response::new(response))
            }
            Err(error) => {
                let status = Status::from(&error);
                tracing::warn!(
                    connection = name,
                    method,
                    code = ?status.code(),
                    error = error.chain(),
                    "partner call failed"
                );
                Err(status)
            }
        }
    }
}
