//! hookyard ingress: the HTTP endpoints partners send webhooks to.
//!
//! Owns, for every source in the integration file: matching path and method, inbound
//! authentication, signature verification, body limits, the dedup key and event id, storing the raw request as an
//! [`Envelope`](hookyard_proto::event::v1::Envelope) in `HOOKYARD_IN`, and the answer to the
//! sender, and absorbing a sender's retries. Also creates `HOOKYARD_IN` and the
//! `HOOKYARD_DEDUP` bucket at start and serves `/healthz`, `/readyz` and
//! `grpc.health.v1` on the webhook listener.
//!
//! Does not own: event types and routing (the router reads the stream), handlers, partner
//! calls, stream and subject names or the envelope format (`hookyard-core`, `hookyard-proto`).
//!
//! Modules:
//! - `access`: the client address (`allow_ips`, `X-Forwarded-For` from `trusted_proxies`) and
//!   the start-up check of inbound settings;
//! - [`auth`]: constant-time checking of `basic`, `query_basic` and `api_key` credentials;
//! - `limits`: per-source rate limit, accepted media types and body read timeout;
//! - `body`: reading a body within `max_body_bytes`;
//! - `event`: building the envelope, dedup key and event id from a request;
//! - `dedup`: the long-window check of event ids in the `HOOKYARD_DEDUP` bucket;
//! - [`publish`]: handing an event to the batcher and the bounded wait for its ack;
//! - `batch`: group commit, the one task publishing waiting events as atomic JetStream batches;
//! - `health`: readiness, the background task creating the stream and bucket, health endpoints;
//! - `capacity`: whether JetStream has room, learnt from refused publishes and probed for
//!   freed space;
//! - `routes`: the router and the webhook handler;
//! - [`framing`]: the HTTP/1 `Host` and `Transfer-Encoding` rules, answered 400 before routing;
//! - `reply`: the answer to an accepted event — the source's templated `reply`, or in `sync`
//!   mode the handler's reply received on `hookyard.reply.<event id>` within the deadline;
//! - `serve`: the accept loop with the header read timeout and header size limit;
//! - `metrics`: request outcomes and store latency, served at `GET /metrics`;
//! - [`verify`]: signature verification over the raw body (Standard Webhooks, GitHub, Stripe,
//!   Shopify, Slack, generic HMAC);
//! - [`handshake`]: verification requests (Slack, WebSub/Meta, Microsoft Graph, Zoom, echo)
//!   answered by ingress itself, never stored;
//! - [`poll`]: polling sources — partner APIs without webhooks called through egress on a
//!   schedule, page by page, each new or changed record stored as one event, one poller per
//!   source across replicas (started when the file has a source with `poll`);
//! - [`error`]: the crate's error type and its mapping to HTTP statuses.
//!
//! Design choices:
//! - **2xx only after the PubAck.** Every failure to store (NATS disconnected, no ack within
//!   [`Settings::publish_timeout`], stream missing or full under `discard: new`) is a 503 with
//!   `Retry-After`. The connection state is checked first because async-nats buffers publishes
//!   while disconnected, and watched while the answer is awaited because async-nats keeps a
//!   request waiting across a reconnect; the timeout bounds everything else. A publish that
//!   timed out or lost its connection may still be stored later; the sender's retry then
//!   collapses onto it through `Nats-Msg-Id`.
//! - **Group commit.** Requests do not publish themselves: they queue their event for one
//!   batcher task, which sends what is waiting as one atomic JetStream batch (`Nats-Batch-Id`,
//!   `HOOKYARD_IN` has `allow_atomic`), at most [`publish::BatchSettings::max_messages`]
//!   (default 100) per batch and one batch in flight; the next batch fills while the previous
//!   one is stored, so batches grow with the load without a timer: a lone request goes out at
//!   once (as a plain publish). [`publish::BatchSettings::linger`] (default 0) can make a batch
//!   wait for more. Each request is
//!   answered with its batch's outcome: a failed batch stored nothing and every request in it
//!   gets 503. The same event twice in a batch is sent once; a batch holding an id the stream
//!   already has is refused whole by JetStream (error 10201) and is then published event by
//!   event, so dedup per message id still holds. More than [`publish::BatchSettings::queue`]
//!   waiting events (default 1024) get 503 with `Retry-After` at once: overload sheds instead of
//!   queueing without bound.
//! - **Duplicates absorbed in two layers.** The event id follows from the source and the dedup
//!   key (the sender's delivery id, else the body hash) and is the `Nats-Msg-Id`, so
//!   `HOOKYARD_IN`'s 2-minute `duplicate_window` stores a retried publish once. A sender retrying
//!   later, within the source's `dedup_window` (default 7 days, `StreamLimits::dedup_window`,
//!   when the source has a sender id), is caught by the `HOOKYARD_DEDUP` KV bucket: after the
//!   body is read and verified and before publishing, ingress looks the id up; if its record's
//!   receive time is within the window the answer is 202 with the same `{"id": …}` and nothing
//!   is published. After the PubAck the id is recorded in the bucket in the background, the
//!   records of a group of events written as one atomic batch (a record older than the window
//!   is replaced; two replicas writing one id write the same). A failed lookup is a 503 with `Retry-After` like a failed publish; a failed
//!   record is only logged, since the event is stored. Both calls are bounded by the publish
//!   timeout. A source keyed by the body hash has no window unless it sets one: two distinct
//!   events with the same body (a periodic ping) share an id, and a week of dedup would drop
//!   the second. Such a source skips the lookup and the record.
//! - **Start-up never waits for NATS.** A background task creates the stream and the dedup
//!   bucket with backoff (and recreates them if they disappear); readiness and gRPC health
//!   report whether events can be stored (NATS connected, stream and bucket present, store not
//!   full). A publish refused for lack of space makes ingress not ready at once and every
//!   request a 503 with `Retry-After` without a publish, until the probe sees space freed (the
//!   in stream or the account's storage shrank, or the stream's cap grew; at the latest after
//!   30 s writes are tried again). A lost connection is checked on every request, so events
//!   are accepted again as soon as the client has reconnected.
//! - **Reserved paths.** `/healthz`, `/readyz`, `/metrics` and `/grpc.health.v1.Health/*` belong to ingress.
//!   A source configured on one of them, or two sources on one path, make [`run`] fail with
//!   [`Error::PathConflict`] rather than silently shadowing a route.
//! - **Exact path match.** Source paths are looked up verbatim (no trailing-slash folding, no
//!   patterns), so a configured path is never interpreted as routing syntax.
//! - **Check order.** 404, 405, 403 (`allow_ips`), 429 (`rate_limit`), 401, 415
//!   (`content_types`), then 413 from `Content-Length` without reading, then the body is read
//!   through a limit within `read_timeout` (408): an unauthenticated sender never makes
//!   ingress read a body.
//!   Then the source's signature, if it has one, is checked (401, without a `WWW-Authenticate`
//!   challenge, `error` naming the kind: `signature_missing`, `signature_malformed`, …) before
//!   anything is published. A signature can only be checked over a body, so a source with a
//!   signature and no `basic` auth reads up to `max_body_bytes` of an unsigned request.
//! - **Handshakes are answered, never stored.** A source's `handshake` read from the query
//!   string (WebSub/Meta, Microsoft Graph, `echo` by `query`) is answered after 403 and 429,
//!   before 401, for `GET` or `POST` even when `methods` lacks it (other such requests still
//!   get 405); one read from the body (Slack, Zoom, `echo` by `json_pointer`) only after the
//!   signature passed. See [`handshake`].
//! - **Signatures over the exact bytes.** Verification runs on the body as received, before
//!   any parsing: the same JSON with other whitespace is another body and fails. Signature
//!   headers are kept in the envelope as they came (they prove the sender, and are not secrets);
//!   a handler can re-check them. Repeated signature headers are refused, not tried in turn;
//!   several secrets may be configured so they rotate without downtime. Secrets that are empty
//!   or not keys make [`run`] fail with [`Error::SignatureSetup`].
//! - **Credentials are not event data.** For a `basic` source, the `Authorization` header ingress
//!   verified is left out of the envelope, since `HOOKYARD_IN` is replayable and readable by
//!   operators; so is an `api_key` header, and the query parameter of a `query_basic` or query
//!   `api_key` source is removed from the stored query (and the query is never logged). Every
//!   other header is kept as raw bytes. For an `none` source all headers are kept, as a handler
//!   may need to check them.
//! - **No JSON on the hot path** unless the dedup expression is jq (the `stripe` and `slack`
//!   dedup presets are); the event type is the router's job.
//! - **Dedup presets.** A source with a provider's signature scheme and no `dedup_key` uses
//!   that provider's delivery id (`hookyard_core::config::dedup`), so a Stripe retry days later
//!   is recognised without configuration.
//! - **Replies.** The sender's answer is the source's `reply` (default 202 `{"id": …}`), also
//!   for a repeat of an accepted event. In `sync` mode ingress subscribes to the event's reply
//!   subject before publishing (same connection, so the subscription is known to the server
//!   before any worker can see the event), then waits for a handler's `reply` step until the
//!   deadline; the event is processed either way. See `reply`.
//! - **Broker limit.** An event larger than the server's `max_payload` can never be stored, so
//!   it is answered 413, not 503 (which would make the sender retry forever).

mod access;
pub mod auth;
mod batch;
mod body;
mod capacity;
mod dedup;
pub mod error;
mod event;
pub mod framing;
pub mod handshake;
mod health;
mod limits;
mod metrics;
pub mod poll;
pub mod publish;
mod reply;
mod routes;
mod serve;
pub mod verify;

use std::{sync::Arc, time::Duration};

use hookyard_core::{Integration, streams::Topology};
use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use serve::{MIN_HEADER_BYTES, ServerLimits};

/// Everything [`run`] needs besides the listener.
#[derive(Clone)]
pub struct Settings {
    /// The integration file; ingress serves its `sources`.
    pub integration: Arc<Integration>,
    /// NATS client (reconnects on its own; see `hookyard_core::settings::connect_nats`).
    pub nats: async_nats::Client,
    /// Stream and subject names.
    pub topology: Topology,
    /// Longest wait for the JetStream ack before answering 503 (default 5s).
    pub publish_timeout: Duration,
    /// Seconds put in Retry-After on 503 (default 5).
    pub retry_after_secs: u64,
    /// Header read timeout and header size limit of every connection.
    pub server: ServerLimits,
    /// Group commit: how many events go out in one JetStream batch, how long a batch may wait
    /// for more, how many events may wait (see [`publish::BatchSettings`]).
    pub batch: publish::BatchSettings,
    /// The polling sources' egress endpoint and lease TTL (see [`poll::PollSettings`]).
    pub poll: poll::PollSettings,
}

impl Settings {
    /// Settings with the default publish timeout (5 s) and `Retry-After` (5 s).
    pub fn new(
        integration: Arc<Integration>,
        nats: async_nats::Client,
        topology: Topology,
    ) -> Self {
        Self {
            integration,
            nats,
            topology,
            publish_timeout: Duration::from_secs(5),
            retry_after_secs: 5,
            server: ServerLimits::default(),
            batch: publish::BatchSettings::default(),
            poll: poll::PollSettings::default(),
        }
    }
}

/// Serves the sources on `listener` until `shutdown` is cancelled, then stops accepting and
/// lets in-flight requests finish (each is bounded by the publish timeout).
///
/// Fails at once on a path conflict (see the crate docs); never because NATS is unreachable.
pub async fn run(
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let sources = routes::sources(&settings.integration)?;
    let pollers = poll::Poller::all(&settings.integration);
    let poll_egress = poll::egress_client(&pollers, &settings.poll)?;
    let poll_metrics = poll::PollMetrics::default();
    let (reporter, grpc_health) = hookyard_core::health::service();
    // The reporter starts out SERVING; nothing is ready until the stream is known to exist.
    hookyard_core::health::set_serving(&reporter, false).await;

    let dedup = Arc::new(dedup::Dedup::new(
        settings.nats.clone(),
        settings.publish_timeout,
    ));
    let capacity = Arc::new(capacity::Capacity::default());
    let readiness = Arc::new(health::Readiness::new(
        settings.nats.clone(),
        settings.topology.clone(),
        dedup.clone(),
        capacity.clone(),
    ));
    let stop = shutdown.child_token();
    let keeper = tokio::spawn(health::keep_ready(
        readiness.clone(),
        reporter,
        stop.clone(),
    ));

    let source_count = sources.len();
    let app = Arc::new(routes::App {
        sources,
        nats: settings.nats.clone(),
        metrics: metrics::Metrics::with(|registry| poll_metrics.register(registry)),
        publisher: publish::Publisher::with_batch(
            settings.nats.clone(),
            settings.publish_timeout,
            settings.batch,
            capacity,
        ),
        dedup,
        topology: settings.topology,
        retry_after_secs: settings.retry_after_secs,
    });
    let polling = poll_egress.map(|egress| {
        let setup = poll::Setup {
            nats: settings.nats,
            topology: app.topology.clone(),
            egress,
            lease_ttl: settings.poll.lease_ttl,
            publish_timeout: settings.publish_timeout,
            metrics: poll_metrics,
        };
        tokio::spawn(poll::run(pollers, setup, stop.clone()))
    });
    let router = routes::router(app, readiness, grpc_health);
    let address = listener.local_addr().map_err(Error::Serve)?;
    tracing::info!(%address, sources = source_count, "ingress listening");

    serve::serve(listener, router, settings.server, shutdown).await;
    stop.cancel();
    if keeper.await.is_err() {
        tracing::warn!("readiness task failed");
    }
    if let Some(polling) = polling
        && polling.await.is_err()
    {
        tracing::warn!("polling task failed");
    }
    tracing::info!("ingress stopped");
    Ok(())
}
