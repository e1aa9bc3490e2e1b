//! Egress's Prometheus metrics, served at `GET /metrics` on its gRPC listener.
//!
//! - `hookyard_egress_calls_total{connection, outcome}`: `Call` RPCs by result: the partner's
//!   status class (`2xx` … `5xx`) or, without a response, the gRPC code (`unavailable`,
//!   `deadline_exceeded`, …).
//! - `hookyard_egress_call_seconds{connection}`: one `Call`, all its attempts included.

use std::sync::Arc;

use hookyard_core::metrics::{Registry, code_label, latency_buckets};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    connection: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    connection: String,
}

/// Counters and timings of egress.
pub(crate) struct Metrics {
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<ConnectionLabels, Histogram>,
}

impl Metrics {
    /// The metrics and the registry holding them.
    pub(crate) fn new() -> (Arc<Self>, Arc<Registry>) {
        let mut registry = Registry::default();
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "hookyard_egress_calls",
            "Partner calls by connection and outcome",
            calls.clone(),
        );
        let call_seconds = Family::<ConnectionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "hookyard_egress_call_seconds",
            "Time to make one partner call, retries included",
            call_seconds.clone(),
        );
        (
            Arc::new(Self {
                calls,
                call_seconds,
            }),
            Arc::new(registry),
        )
    }

    /// Records a call that got `status` from the partner.
    pub(crate) fn answered(&self, connection: &str, status: u32, seconds: f64) {
        self.count(connection, format!("{}xx", status / 100), seconds);
    }

    /// Records a call that got no response (`code` in snake case).
    pub(crate) fn failed(&self, connection: &str, code: tonic::Code, seconds: f64) {
        self.count(connection, code_label(code), seconds);
    }

    fn count(&self, connection: &str, outcome: String, seconds: f64) {
        self.calls
            .get_or_create(&CallLabels {
                connection: connection.to_owned(),
                outcome,
            })
            .inc();
        self.call_seconds
            .get_or_create(&ConnectionLabels {
                connection: connection.to_owned(),
            })
            .observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_status_classes_or_snake_case_codes() {
        let (metrics, registry) = Metrics::new();
        metrics.answered("erp", 201, 0.1);
        metrics.failed("erp", tonic::Code::DeadlineExceeded, 1.0);
        let text = hookyard_core::metrics::render(&registry);
        assert!(
            text.contains(r#"hookyard_egress_calls_total{connection="erp",outcome="2xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"hookyard_egress_calls_total{connection="erp",outcome="deadline_exceeded"} 1"#
            ),
            "{text}"
        );
    }
}
