//! The router's Prometheus metrics, served at `GET /metrics` on its gRPC listener.
//!
//! - `hookyard_router_events_total{source, outcome}`: events read from `HOOKYARD_IN`, by what
//!   became of them: `routed`, `unrouted`, `bad_event`, `gave_up` (dead-lettered) or `retry` (a
//!   publish failed; the event comes back).
//! - `hookyard_router_work_total{handler, stored}`: work items published per handler (fan-out),
//!   `stored` = `work` (the work queue) or `waiting` (the handler was at its cap: parked in
//!   `HOOKYARD_WAIT`).
//! - `hookyard_router_moved_total{handler}`: parked items moved to the work queue.
//! - `hookyard_router_waiting{handler}`: items of the handler parked in `HOOKYARD_WAIT` now,
//!   as its mover last saw (0 while the handler is below its cap).

use std::sync::Arc;

use hookyard_core::metrics::Registry;
use hookyard_core::work::Stored;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkLabels {
    handler: String,
    stored: &'static str,
}

/// Counters of the router.
pub(crate) struct Metrics {
    events: Family<EventLabels, Counter>,
    work: Family<WorkLabels, Counter>,
    moved: Family<HandlerLabels, Counter>,
    waiting: Family<HandlerLabels, Gauge>,
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
        let work = Family::<WorkLabels, Counter>::default();
        registry.register(
            "hookyard_router_work",
            "Work items published, by handler and where they were stored (work or waiting)",
            work.clone(),
        );
        let moved = Family::<HandlerLabels, Counter>::default();
        registry.register(
            "hookyard_router_moved",
            "Parked work items moved to the work queue, by handler",
            moved.clone(),
        );
        let waiting = Family::<HandlerLabels, Gauge>::default();
        registry.register(
            "hookyard_router_waiting",
            "Work items parked because the handler is at its cap, by handler",
            waiting.clone(),
        );
        let metrics = Self {
            events,
            work,
            moved,
            waiting,
        };
        (Arc::new(metrics), Arc::new(registry))
    }

    pub(crate) fn event(&self, source: &str, outcome: &'static str) {
        self.events
            .get_or_create(&EventLabels {
                source: source.to_owned(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn work(&self, handler: &str, stored: Stored) {
        let stored = match stored {
            Stored::Work => "work",
            Stored::Waiting => "waiting",
        };
        self.work
            .get_or_create(&WorkLabels {
                handler: handler.to_owned(),
                stored,
            })
            .inc();
    }

    pub(crate) fn moved(&self, handler: &str) {
        self.moved.get_or_create(&labels(handler)).inc();
    }

    pub(crate) fn waiting(&self, handler: &str, items: u64) {
        self.waiting
            .get_or_create(&labels(handler))
            .set(i64::try_from(items).unwrap_or(i64::MAX));
    }
}

fn labels(handler: &str) -> HandlerLabels {
    HandlerLabels {
        handler: handler.to_owned(),
    }
}
