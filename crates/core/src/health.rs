//! `grpc.health.v1` for every service, and the probe behind each binary's `healthcheck`
//! subcommand (containers need no curl or shell to check a service).

use std::time::Duration;

use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_check_response, health_client::HealthClient},
    server::{HealthReporter, health_reporter},
};

/// A health service and the handle that changes what it reports.
pub fn service() -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    health_reporter()
}

/// Marks the whole server (service name "") serving or not.
pub async fn set_serving(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
}

/// Why a health probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The endpoint URL is invalid.
    #[error("invalid health endpoint {0}")]
    Endpoint(String),
    /// Could not connect.
    #[error("cannot connect to {endpoint}")]
    Connect {
        /// The endpoint probed.
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The check RPC failed.
    #[error("health check failed")]
    Rpc(#[source] tonic::Status),
    /// The service answered but is not serving.
    #[error("service is not serving (status {0})")]
    NotServing(i32),
    /// No answer in time.
    #[error("health check timed out")]
    Timeout,
}

/// Checks the gRPC health of the service at `endpoint` (e.g. `http://127.0.0.1:50051`).
pub async fn probe(endpoint: &str, timeout: Duration) -> Result<(), ProbeError> {
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|_| ProbeError::Endpoint(endpoint.to_owned()))?
            .connect_timeout(timeout)
            .connect()
            .await
            .map_err(|source| ProbeError::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(ProbeError::Rpc)?;
        let status = response.into_inner().status;
        if status == health_check_response::ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err(ProbeError::NotServing(status))
        }
    };
    tokio::time::timeout(timeout, check)
        .await
        .map_err(|_| ProbeError::Timeout)?
}
