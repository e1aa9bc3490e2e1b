//! The token service's Prometheus metrics, served at `GET /metrics` on its gRPC listener.
//!
//! - `hookyard_token_requests_total{connection, outcome}`: `GetToken` RPCs by result, `ok` or
//!   the gRPC code of the failure (`unavailable`, `failed_precondition`, `not_found`).

use std::sync::Arc;

use hookyard_core::metrics::{Registry, code_label};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    connection: String,
    outcome: String,
}

/// Counters of the token service.
pub(crate) struct Metrics {
    requests: Family<RequestLabels, Counter>,
}

impl Metrics {
    /// The counters and the registry holding them.
    pub(crate) fn new() -> (Arc<Self>, Arc<Registry>) {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "hookyard_token_requests",
            "GetToken requests by connection and outcome",
            requests.clone(),
        );
        (Arc::new(Self { requests }), Arc::new(registry))
    }

    pub(crate) fn request(&self, connection: &str, code: tonic::Code) {
        self.requests
            .get_or_create(&RequestLabels {
                connection: connection.to_owned(),
                outcome: code_label(code),
            })
            .inc();
    }
}
