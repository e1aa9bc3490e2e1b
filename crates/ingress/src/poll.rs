//! Polling sources: partner APIs without webhooks, turned into events page by page.
//!
//! A source with a `poll` table (see `hookyard_core::config::poll`) is called through egress
//! (gRPC `Call`), so the connection's auth (an OAuth 2.0 token from the token service), TLS, SSRF
//! guard, retries and audit apply as for a handler's call. Every record of an answer becomes one
//! [`Envelope`](hookyard_proto::event::v1::Envelope) in `HOOKYARD_IN` like a webhook's: the poll
//! request's method, path and query, `content-type: application/json`, the record's JSON as the
//! body; its id follows from the source, the record id and the record version, and it is the
//! `Nats-Msg-Id`. The router gives it a type with the source's `event_type` (on the record).
//!
//! Modules:
//! - [`request`]: a page's egress request from `path`, `query`, `headers`, `body`;
//! - [`answer`]: records, ids, events, the next page and the cursor from an answer;
//! - `link`: `Link: rel="next"` pagination kept under the connection's `base_url`;
//! - [`cycle`]: one poll, page by page (used by ingress and by `hookyard poll --dry-run`);
//! - `store`: a page's events as one atomic JetStream batch, one subject per event;
//! - `state`: the cursor in `HOOKYARD_POLL_CURSORS`, written compare-and-set;
//! - `lease`: one poller per source across replicas (`HOOKYARD_POLL_LEASES`);
//! - `task`: the schedule, the backoff and the lease of one source;
//! - `metrics`: `hookyard_ingress_poll_*`.
//!
//! Nothing is lost across crashes: a page's events are acknowledged before the next page is
//! asked for, and the cursor is stored only after the last page, so a crash at any point makes
//! the next poll read again from the old cursor. Records read again are absorbed by the stream:
//! each event has its own subject and is published expecting that subject to be empty (see
//! `store`), which holds as long as the stream keeps the event, not only for its 2-minute
//! duplicate window.

pub mod answer;
pub mod cycle;
mod lease;
mod link;
mod metrics;
pub mod request;
mod state;
mod store;
mod task;

use std::{sync::Arc, time::Duration};

use async_nats::jetstream;
use hookyard_core::{fault, streams::Topology};
use hookyard_proto::egress::v1::egress_service_client::EgressServiceClient;
use tokio_util::sync::CancellationToken;

pub use cycle::Poller;
pub use link::LinkError;
pub(crate) use metrics::PollMetrics;

/// How ingress runs its polling sources.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// gRPC endpoint of egress, e.g. `http://egress:50052`; required when the integration file
    /// has a polling source.
    pub egress_endpoint: Option<String>,
    /// How long a replica's lease on a source lasts without renewal: after its holder dies,
    /// another replica takes the source over within this plus the source's interval.
    pub lease_ttl: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            egress_endpoint: None,
            lease_ttl: Duration::from_secs(15),
        }
    }
}

/// Why a poll failed. Nothing of a failed poll moves the cursor.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// A request value's expression failed.
    #[error("the request's {field} expression failed")]
    Request {
        /// `path`, `query.<name>`, `headers.<name>` or `body`.
        field: String,
        #[source]
        source: hookyard_core::expr::ExprError,
    },
    /// The path expression gave no path starting with `/`.
    #[error("the path expression gave no path starting with '/'")]
    NoPath,
    /// Egress could not make the call (unreachable, timeout, refused destination, …).
    #[error("egress call failed ({:?}): {}", .0.code(), .0.message())]
    Egress(tonic::Status),
    /// The partner answered outside 2xx.
    #[error("the partner answered HTTP {0}")]
    Status(u32),
    /// The answer could not be read as the source describes it.
    #[error("{what}: {detail}")]
    Answer {
        /// What went wrong.
        what: &'static str,
        /// Details (the parser's or filter's message).
        detail: String,
    },
    /// The `Link` header of the answer cannot be followed.
    #[error("cannot follow the next link")]
    Link(#[source] LinkError),
    /// A record is larger than the source's `max_body_bytes`.
    #[error("record {record_id:?} is {bytes} bytes, more than max_body_bytes ({limit})")]
    RecordTooLarge {
        /// The record's id (empty when it has none).
        record_id: String,
        /// Its size as JSON.
        bytes: usize,
        /// The limit.
        limit: u64,
    },
    /// Events could not be stored in `HOOKYARD_IN`.
    #[error("events not stored: {0}")]
    Store(StoreFailure),
    /// The cursor could not be read or stored.
    #[error("cannot {what}: {detail}")]
    Cursor {
        /// What was being done.
        what: &'static str,
        /// The NATS error.
        detail: String,
    },
    /// Another poller stored the cursor while this poll ran (its lease had expired); the
    /// records are stored, the next poll reads on from the other poller's cursor.
    #[error("another poller stored the cursor first")]
    CursorMoved,
}

/// Why JetStream did not store a page.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    /// The NATS client is not connected.
    #[error("nats is not connected")]
    Disconnected,
    /// No answer within the publish timeout.
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    /// JetStream refused a publish.
    #[error("jetstream refused the event ({0})")]
    Rejected(jetstream::context::PublishErrorKind),
    /// JetStream refused a batch (its error code, 0 when the answer was unreadable).
    #[error("jetstream refused the batch (error code {0})")]
    BatchRefused(u64),
}

impl PollError {
    /// The kind, for logs and the `kind` label of `hookyard_ingress_poll_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Request { .. } | Self::NoPath => "request",
            Self::Egress(status) => match status.code() {
                tonic::Code::DeadlineExceeded => "timeout",
                tonic::Code::Unavailable => "unavailable",
                tonic::Code::PermissionDenied => "refused",
                _ => "egress",
            },
            Self::Status(status) if (500..600).contains(status) => "http_5xx",
            Self::Status(status) if (400..500).contains(status) => "http_4xx",
            Self::Status(_) => "http_other",
            Self::Answer { .. } | Self::Link(_) => "bad_answer",
            Self::RecordTooLarge { .. } => "record_too_large",
            Self::Store(_) => "store",
            Self::Cursor { .. } => "cursor",
            Self::CursorMoved => "cursor_moved",
        }
    }

    /// How long to wait before the next try when the refusing side said so (an open circuit
    /// breaker, a token service that is backing off).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Egress(status) => fault::wait_of(status).and_then(|w| w.retry_after),
            _ => None,
        }
    }
}

/// What the pollers of one ingress need besides their sources.
pub(crate) struct Setup {
    pub nats: async_nats::Client,
    pub topology: Topology,
    pub egress: EgressServiceClient<tonic::transport::Channel>,
    pub lease_ttl: Duration,
    pub publish_timeout: Duration,
    pub metrics: PollMetrics,
}

/// The egress client of the polling sources, `None` when there are none; an error when there
/// are some and no usable endpoint.
pub(crate) fn egress_client(
    pollers: &[Poller],
    settings: &PollSettings,
) -> Result<Option<EgressServiceClient<tonic::transport::Channel>>, crate::Error> {
    if pollers.is_empty() {
        return Ok(None);
    }
    let Some(endpoint) = &settings.egress_endpoint else {
        let names: Vec<&str> = pollers.iter().map(|p| p.source.as_str()).collect();
        return Err(crate::Error::PollWithoutEgress {
            sources: names.join(", "),
        });
    };
    let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
        .map_err(|source| crate::Error::EgressEndpoint {
            endpoint: endpoint.clone(),
            source,
        })?
        // Lazy: ingress starts while egress is down; polls then fail UNAVAILABLE and back off.
        .connect_lazy();
    // Egress returns partner bodies up to 10 MiB: raise tonic's 4 MiB default to match it.
    Ok(Some(
        EgressServiceClient::new(channel)
            .max_decoding_message_size(hookyard_core::grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(hookyard_core::grpc::MAX_MESSAGE_BYTES),
    ))
}

/// Polls every source of `pollers` until `shutdown`: sets up the buckets (retrying until NATS
/// answers), then runs one task per source.
pub(crate) async fn run(pollers: Vec<Poller>, setup: Setup, shutdown: CancellationToken) {
    let js = jetstream::new(setup.nats.clone());
    let topology = &setup.topology;
    let buckets = hookyard_core::retry::until_ok(
        &shutdown,
        || {
            let (topology, js) = (topology.clone(), js.clone());
            async move { topology.ensure_poll(&js).await }
        },
        |attempt, error| {
            tracing::warn!(attempt, error = %hookyard_core::telemetry::report(error), "cannot set up the poll buckets yet");
        },
    );
    let Some((cursors, leases)) = buckets.await else {
        return;
    };
    // A fresh inbox ends in a unique token: this replica's name in the leases.
    let inbox = setup.nats.new_inbox();
    let holder = inbox.rsplit('.').next().unwrap_or(&inbox).to_owned();
    let shared = Arc::new(task::Shared {
        store: store::Store::new(setup.nats.clone(), topology.clone(), setup.publish_timeout),
        cursors: state::Cursors::new(cursors, setup.publish_timeout),
        leases: lease::Leases::new(
            leases,
            js,
            &topology.poll_leases_bucket(),
            holder,
            setup.lease_ttl,
        ),
        egress: setup.egress,
        metrics: setup.metrics,
    });
    tracing::info!(sources = pollers.len(), "polling sources started");
    let tasks = pollers
        .into_iter()
        .map(|poller| task::run(shared.clone(), poller, shutdown.clone()));
    futures::future::join_all(tasks).await;
}
