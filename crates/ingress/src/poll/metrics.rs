//! Metrics of the polling sources, served with ingress's others at `GET /metrics`:
//!
//! - `hookyard_ingress_poll_polls_total{source, outcome}`: polls run by this replica, `outcome`
//!   `ok` or `error`;
//! - `hookyard_ingress_poll_records_total{source, outcome}`: records read, `stored` (a new
//!   event) or `duplicate` (the stream already had it);
//! - `hookyard_ingress_poll_errors_total{source, kind}`: failed polls by the error's kind
//!   (`http_5xx`, `timeout`, `unavailable`, `bad_answer`, `store`, …);
//! - `hookyard_ingress_poll_last_success_timestamp_seconds{source}`: when the last successful
//!   poll of this replica ended;
//! - `hookyard_ingress_poll_backoff_seconds{source}`: the wait before the next try after a
//!   failure, 0 after a success;
//! - `hookyard_ingress_poll_leader{source}`: 1 while this replica holds the source's lease.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    source: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    source: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Source {
    source: String,
}

/// The poll metrics (cheap to clone: the families share their series).
#[derive(Clone, Default)]
pub struct PollMetrics {
    polls: Family<Outcome, Counter>,
    records: Family<Outcome, Counter>,
    errors: Family<Kind, Counter>,
    last_success: Family<Source, Gauge<f64, std::sync::atomic::AtomicU64>>,
    backoff: Family<Source, Gauge<f64, std::sync::atomic::AtomicU64>>,
    leader: Family<Source, Gauge>,
}

fn source(name: &str) -> Source {
    Source {
        source: name.to_owned(),
    }
}

impl PollMetrics {
    /// Adds the metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "hookyard_ingress_poll_polls",
            "Polls of polling sources, by outcome",
            self.polls.clone(),
        );
        registry.register(
            "hookyard_ingress_poll_records",
            "Records read by polls: stored as new events, or already stored",
            self.records.clone(),
        );
        registry.register(
            "hookyard_ingress_poll_errors",
            "Failed polls, by kind of error",
            self.errors.clone(),
        );
        registry.register(
            "hookyard_ingress_poll_last_success_timestamp_seconds",
            "Unix time at which the last successful poll ended",
            self.last_success.clone(),
        );
        registry.register(
            "hookyard_ingress_poll_backoff_seconds",
            "Wait before the next poll after a failure (0 after a success)",
            self.backoff.clone(),
        );
        registry.register(
            "hookyard_ingress_poll_leader",
            "1 while this replica holds the source's poll lease",
            self.leader.clone(),
        );
    }

    /// A successful poll that stored `new` events and found `duplicates` already stored.
    pub fn succeeded(&self, name: &str, new: usize, duplicates: usize) {
        let count = |outcome, n: usize| {
            self.records
                .get_or_create(&Outcome {
                    source: name.to_owned(),
                    outcome,
                })
                .inc_by(n as u64);
        };
        count("stored", new);
        count("duplicate", duplicates);
        self.polls
            .get_or_create(&Outcome {
                source: name.to_owned(),
                outcome: "ok",
            })
            .inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_success.get_or_create(&source(name)).set(now);
        self.backoff.get_or_create(&source(name)).set(0.0);
    }

    /// A failed poll of `kind`, retried after `backoff`.
    pub fn failed(&self, name: &str, kind: &'static str, backoff: std::time::Duration) {
        self.polls
            .get_or_create(&Outcome {
                source: name.to_owned(),
                outcome: "error",
            })
            .inc();
        self.errors
            .get_or_create(&Kind {
                source: name.to_owned(),
                kind,
            })
            .inc();
        self.backoff
            .get_or_create(&source(name))
            .set(backoff.as_secs_f64());
    }

    /// Whether this replica holds the lease of `name`.
    pub fn leader(&self, name: &str, holds: bool) {
        self.leader
            .get_or_create(&source(name))
            .set(i64::from(holds));
    }
}
