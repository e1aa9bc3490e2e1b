//! The worker's Prometheus metrics, served at `GET /metrics` on its gRPC listener.
//!
//! - `hookyard_worker_deliveries_total{handler, outcome}`: deliveries by what became of them:
//!   `handled` (acked), `retry` (NAKed with delay), `wait` (NAKed with delay without spending
//!   an attempt: no partner call was possible), `dead_letter`.
//! - `hookyard_worker_attempt_seconds{handler}`: time to run a handler's steps once.
//! - `hookyard_worker_outcome_records_dropped_total{reason}`: outcome records (see `record`)
//!   lost: `queue_full` (more outcomes than the publisher keeps up with) or `not_stored`
//!   (NATS refused or did not acknowledge them).
//! - `hookyard_worker_program_failures_total{handler, reason}`: failed runs of `subprocess`
//!   steps' programs, by reason (`temp_fail`, `exit`, `timeout`, `output_too_large`, …).

use std::sync::Arc;

use hookyard_core::metrics::{Registry, latency_buckets};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    handler: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    handler: String,
}

/// Counters and timings of the worker.
pub(crate) struct Metrics {
    deliveries: Family<DeliveryLabels, Counter>,
    attempt_seconds: Family<HandlerLabels, Histogram>,
    records_dropped: Family<DropLabels, Counter>,
    program_failures: Family<ProgramLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabels {
    handler: String,
    reason: &'static str,
}

impl Metrics {
    /// The metrics and the registry holding them.
    pub(crate) fn new() -> (Arc<Self>, Arc<Registry>) {
        let mut registry = Registry::default();
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "hookyard_worker_deliveries",
            "Deliveries by handler and outcome",
            deliveries.clone(),
        );
        let attempt_seconds = Family::<HandlerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "hookyard_worker_attempt_seconds",
            "Time to run a handler's steps once",
            attempt_seconds.clone(),
        );
        let records_dropped = Family::<DropLabels, Counter>::default();
        registry.register(
            "hookyard_worker_outcome_records_dropped",
            "Outcome records lost, by reason",
            records_dropped.clone(),
        );
        let program_failures = Family::<ProgramLabels, Counter>::default();
        registry.register(
            "hookyard_worker_program_failures",
            "Failed runs of subprocess steps' programs, by handler and reason",
            program_failures.clone(),
        );
        (
            Arc::new(Self {
                deliveries,
                attempt_seconds,
                records_dropped,
                program_failures,
            }),
            Arc::new(registry),
        )
    }

    pub(crate) fn delivery(&self, handler: &str, outcome: &'static str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                handler: handler.to_owned(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn attempt(&self, handler: &str, seconds: f64) {
        self.attempt_seconds
            .get_or_create(&HandlerLabels {
                handler: handler.to_owned(),
            })
            .observe(seconds);
    }

    pub(crate) fn program_failure(&self, handler: &str, reason: &'static str) {
        self.program_failures
            .get_or_create(&ProgramLabels {
                handler: handler.to_owned(),
                reason,
            })
            .inc();
    }

    pub(crate) fn outcome_record_dropped(&self, reason: &'static str) {
        self.records_dropped
            .get_or_create(&DropLabels { reason })
            .inc();
    }
}
