//! The gRPC face of egress: `hookyard.egress.v1.EgressService`.

use std::{sync::Arc, time::Instant};

use hookyard_proto::egress::v1::{
    CallRequest, CallResponse, TestConnectionRequest, TestConnectionResponse,
    egress_service_server::EgressService,
};
use tonic::{Request, Response, Status};

use tracing::Instrument as _;

use crate::{audit::Audit, call, connection::Live, metrics::Metrics, token::TokenClient};

/// Largest body excerpt a connection test returns.
const EXCERPT_BYTES: usize = 2048;

/// Makes partner calls on the configured connections.
pub(crate) struct EgressApi {
    connections: Arc<Live>,
    tokens: TokenClient,
    audit: Option<Audit>,
    metrics: Arc<Metrics>,
}

impl EgressApi {
    pub(crate) fn new(
        connections: Arc<Live>,
        tokens: TokenClient,
        audit: Option<Audit>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            connections,
            tokens,
            audit,
            metrics,
        }
    }

    fn services(&self) -> call::CallContext<'_> {
        call::CallContext {
            tokens: &self.tokens,
            audit: self.audit.as_ref(),
        }
    }
}

#[tonic::async_trait]
impl EgressService for EgressApi {
    async fn call(&self, request: Request<CallRequest>) -> Result<Response<CallResponse>, Status> {
        let parent = hookyard_core::trace::from_grpc(&request);
        let call = request.into_inner();
        let name = call.connection.clone();
        let method = call.method.clone();
        // The worker's step is the parent; each attempt is a child span.
        let span = tracing::info_span!(
            "call",
            connection = %name,
            method = %method,
            http.response.status_code = tracing::field::Empty,
            attempts = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        hookyard_core::trace::adopt(&span, parent);
        let started = Instant::now();
        let connections = self.connections.current();
        let outcome = match connections.get(&name) {
            Ok(connection) => {
                call::perform(connection, &self.services(), call, None)
                    .instrument(span.clone())
                    .await
            }
            Err(error) => Err(error),
        };
        if let Ok(response) = &outcome {
            span.record("http.response.status_code", response.status);
            span.record("attempts", response.attempts);
        }
        let _in_call = span.enter();
        match outcome {
            Ok(response) => {
                self.metrics
                    .answered(&name, response.status, started.elapsed().as_secs_f64());
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
                self.metrics
                    .failed(&name, status.code(), started.elapsed().as_secs_f64());
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

    async fn test_connection(
        &self,
        request: Request<TestConnectionRequest>,
    ) -> Result<Response<TestConnectionResponse>, Status> {
        let test = request.into_inner();
        let connections = self.connections.current();
        let connection = connections
            .get(&test.connection)
            .map_err(|e| Status::from(&e))?;
        let or = |text: String, default: &str| {
            if text.is_empty() {
                default.to_owned()
            } else {
                text
            }
        };
        let call = CallRequest {
            connection: test.connection.clone(),
            method: or(test.method, "GET"),
            path: or(test.path, "/"),
            headers: test.headers,
            body: test.body,
            ..CallRequest::default()
        };
        let started = Instant::now();
        let outcome = call::perform(connection, &self.services(), call, Some(1)).await;
        let elapsed_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
        let response = match outcome {
            Ok(response) => {
                let truncated = response.body.len() > EXCERPT_BYTES;
                let mut body = response.body;
                body.truncate(EXCERPT_BYTES);
                TestConnectionResponse {
                    status: response.status,
                    headers: response.headers,
                    body_excerpt: body,
                    truncated,
                    elapsed_ms,
                    ..TestConnectionResponse::default()
                }
            }
            Err(error) => TestConnectionResponse {
                elapsed_ms,
                error_code: format!("{:?}", error.code()),
                error: error.to_string(),
                ..TestConnectionResponse::default()
            },
        };
        tracing::info!(
            connection = test.connection,
            status = response.status,
            error_code = response.error_code,
            "connection tested"
        );
        Ok(Response::new(response))
    }
}
