//! Ingress's Prometheus metrics, served at `GET /metrics` on the webhook listener.
//!
//! - `hookyard_ingress_requests_total{source, outcome}`: every answered webhook request;
//!   `outcome` is `accepted`, `duplicate`, `handshake`, or the `error` kind of the refusal
//!   (`unauthorized`, `signature_mismatch`, `body_too_large`, `unavailable`, …). `source` is
//!   empty for a path no source listens on.
//! - `hookyard_ingress_store_seconds{source}`: from the request's arrival to JetStream's
//!   acknowledgement, for stored events.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use hookyard_core::metrics::{CONTENT_TYPE_OPENMETRICS, Registry, latency_buckets, render};
use http::header::CONTENT_TYPE;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    source: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

/// The metrics and the registry that serves them.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    store_seconds: Family<SourceLabels, Histogram>,
}

impl Metrics {
    /// The metrics, with more registered by `register` (the polling sources').
    pub(crate) fn with(register: impl FnOnce(&mut Registry)) -> Arc<Self> {
        let mut registry = Registry::default();
        register(&mut registry);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "hookyard_ingress_requests",
            "Webhook requests answered, by source and outcome",
            requests.clone(),
        );
        let store_seconds = Family::<SourceLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "hookyard_ingress_store_seconds",
            "Time from a request's arrival to JetStream's acknowledgement of its event",
            store_seconds.clone(),
        );
        Arc::new(Self {
            registry,
            requests,
            store_seconds,
        })
    }

    /// Counts an answered request.
    pub(crate) fn request(&self, source: &str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels {
                source: source.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Records how long storing an event took.
    pub(crate) fn stored(&self, source: &str, seconds: f64) {
        self.store_seconds
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .observe(seconds);
    }

    /// `GET /metrics`.
    pub(crate) fn response(&self) -> Response {
        (
            [(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)],
            render(&self.registry),
        )
            .into_response()
    }
}
