//! The router's Prometheus metrics, served at `GET /metrics` on its gRPC listener.
//!
//! - `hookyard_router_events_total{source, outcome}`: events read from `HOOKYARD_IN`, by what
//!   became of them: `routed`, `unrouted`, `bad_event` (dead-lettered) or `retry` (a publish
//!   failed; the event comes back).
//! - `hookyard_router_work_total{handler}`: work items published per handler (fan-out).

use std::sync::Arc;

use hookyard_core::metrics::Registry;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    source: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    handler: String,
}

/// Counters of the router.
pub(crate) struct Metrics {
    events: Family<EventLabels, Counter>,
    work: Family<HandlerLabels, Counter>,
}

impl Metrics {
    /// The counters and the registry holding them.
    pub(crate) fn new() -> (Arc<Self>, Arc<Registry>) {
        let mut registry = Registry::default();
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "hookyard_router_events",
            "Events read from the in stream, by source and outcome",
            events.clone(),
        );
        let work = Family::<HandlerLabels, Counter>::default();
        registry.register(
            "hookyard_router_work",
            "Work items published, by handler",
            work.clone(),
        );
        (Arc::new(Self { events, work }), Arc::new(registry))
    }

    pub(crate) fn event(&self, source: &str, outcome: &'static str) {
        self.events
            .get_or_create(&EventLabels {
                source: source.to_owned(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn work(&self, handler: &str) {
        self.work
            .get_or_create(&HandlerLabels {
                handler: handler.to_owned(),
            })
            .inc();
    }
}
