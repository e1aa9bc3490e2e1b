//! The router: reads every accepted event from `HOOKYARD_IN`, extracts its event type, and
//! publishes one work item per routed handler to `HOOKYARD_WORK`, or a dead letter to
//! `hookyard.dlq.unrouted` when nothing can take it.
//!
//! Owns:
//! - [`route`]: event-type extraction (the source's `event_type` expression) and the
//!   route table lookup, as a pure function of the integration file and one envelope;
//! - `publish`: the outbound messages (work items, unrouted dead letters), their
//!   `Nats-Msg-Id`s and headers, and waiting for every publish acknowledgement;
//! - `batch`: group commit of work items: the items of the events being routed stored as one
//!   atomic batch, item by item where a handler is at its cap;
//! - `consume`: the durable pull consumer shared by all router replicas, bounded concurrency,
//!   ack/NAK and the drain on shutdown;
//! - `wait`: one mover per handler, bringing the items parked in `HOOKYARD_WAIT` back to the
//!   work queue (see [One handler cannot stall the others](#one-handler-cannot-stall-the-others));
//! - `table` and `reload`: the route table in use, and replacing it when the integration file
//!   changes (see [Reloading the integration file](#reloading-the-integration-file));
//! - `metrics`: events by outcome and work items by handler, served at `GET /metrics` on the
//!   gRPC listener (which also accepts HTTP/1.1 for Prometheus);
//! - [`run`]: stream setup, the consumer loop and `grpc.health.v1`.
//!
//! - [`admin`]: the operators' API (events, dead letters, replay, handlers, audit) on its own
//!   listener, when [`Settings::admin`] is set, and the web console under `/console` on the
//!   same listener (HTML pages over the same functions; a sign-in with the admin token, then a
//!   session cookie and a CSRF token on every form; [`admin::ConsoleSettings`] names egress for
//!   its test requests and the token service's consent page for its Connect links).
//!
//! It does not own the handlers' work (the worker) nor the streams' settings
//! ([`hookyard_core::streams`]).
//!
//! # Delivery guarantees
//!
//! An inbound message is acknowledged only after every message it produced (all work items, or
//! the dead letter) has been acknowledged by JetStream. Any publish failure NAKs it with a delay
//! so it is retried; a retry republishes everything, and the `Nats-Msg-Id`s
//! (`<event id>:<handler>`, `<event id>:unrouted`) make JetStream store each copy once.
//!
//! # Why the router consumer has no `max_deliver`, and the router's own bound
//!
//! The router consumer is created with unlimited deliveries (`max_deliver = -1`), retried with
//! NAK-with-delay on a growing backoff ([`ROUTER_BACKOFF`]): a bounded `max_deliver` would make
//! JetStream silently stop delivering an event past it — dropping it, which the first promise
//! (nothing acknowledged is lost) forbids. Everything that depends on the event's content is
//! decided without failing: an undecodable payload, an unknown source, a missing type or a type
//! no route matches is dead-lettered and acknowledged. What is left are failures of the
//! outbound publish (NATS down, a full or missing work stream, a work item over the server's
//! `max_payload`) and a router that dies on a message before it can answer. So the router bounds
//! deliveries itself ([`Settings::max_deliver`], `HOOKYARD_ROUTER_MAX_DELIVER`, default
//! [`ROUTER_MAX_DELIVER`]): the attempt of the last delivery that fails, or any delivery past the
//! bound (whose earlier deliveries never answered), dead-letters the event on
//! `hookyard.dlq.unrouted` with the reason `router_gave_up` and the last error, instead of
//! routing it again. A message that keeps failing therefore takes a bounded share of the
//! router's attempts and then leaves, and the others go on meanwhile (each message is routed
//! on its own, [`ROUTER_CONCURRENCY`] at once). A dead letter too large for the server keeps
//! the envelope without its body and names the event's sequence in `HOOKYARD_IN`, which keeps it.
//! While NATS is down nothing is delivered, so an outage does not spend the bound.
//!
//! # One handler cannot stall the others
//!
//! Each handler may have [`StreamLimits::work_max_per_handler`](hookyard_core::streams::StreamLimits)
//! items in the work queue (`HOOKYARD_WORK_MAX_PER_HANDLER`); JetStream refuses more on its
//! subject. The router then parks the item in `HOOKYARD_WAIT` and acknowledges the event, so
//! an absent or slow handler's backlog never fills the queue or the router consumer's
//! acknowledgement window the others share. A mover per handler (`wait`) brings its parked
//! items back as its workers make room, and reports them (`hookyard_router_waiting`, a log line
//! when the handler reaches its cap and when it is below it again, `waiting` in the admin API's
//! handlers).
//!
//! # Reloading the integration file
//!
//! With [`Settings::reload`] set (`hookyard-router` sets it unless `--reload-interval` /
//! `HOOKYARD_ROUTER_RELOAD_INTERVAL` is `0s`; the default is 2 s), the router reads the
//! integration file every interval and compares its content with the last content it saw — the
//! bytes, not the modification time, which a bind-mounted or `ConfigMap` file may keep. A new
//! content is loaded once it has stayed the same for a moment (so a file overwritten in place is
//! never loaded half written), and applies to every event routed from then on. This is how a
//! handler is added without restarting anything: add it and its routes to the file, start its
//! worker; the worker's consumer receives the work items already waiting on
//! `hookyard.work.<handler>`, which the work-queue stream keeps until a consumer takes them.
//!
//! - **What reloads**: everything the router reads from the file — the routes, the handlers'
//!   names they point to, and the sources with their `event_type` expressions. Streams and the
//!   router consumer do not depend on the file (a work subject is per handler under one
//!   wildcard), so nothing in NATS has to change.
//! - **An invalid file** (a route to a missing handler, a syntax error, an unreadable file) is
//!   logged as a warning with every problem, by key and line, and the current table is kept; it
//!   is tried again when the content changes.
//! - **Events routed before the reload follow the old table.** An event in flight finishes with
//!   the table it started with; an event of a type that had no route yet was dead-lettered on
//!   `hookyard.dlq.unrouted` with its full envelope, so nothing is lost: once the route exists,
//!   `hookyard dlq replay --handler unrouted` sends it to the handlers its type now routes to.
//! - **Replicas reload on their own**, each within about one interval of the change (plus the
//!   settle moment), so for that long two replicas may route the same type differently.
//!
//! The rest of the file (connections, the handlers' steps) is not the router's; the services
//! that use it load it at their own start.

pub mod admin;
mod batch;
mod consume;
mod metrics;
mod publish;
pub mod route;
mod table;
mod wait;

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, consumer::PullConsumer};
pub(crate) use hookyard_core::telemetry::report;
use hookyard_core::{
    Integration,
    config::SecretScope,
    health, retry,
    streams::{StreamSetupError, Topology},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Delay before the n-th redelivery of an inbound message whose publishes failed; the last entry
/// repeats.
pub const ROUTER_BACKOFF: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// How long the router may hold an inbound message before JetStream redelivers it. Routing
/// takes a few publish round trips, each bounded by the client's publish timeout.
pub const ROUTER_ACK_WAIT: Duration = Duration::from_secs(30);

/// Inbound messages one router process routes at once: enough that the work items of a burst
/// go out in batches of a hundred or so (`batch`), well under the consumer's 1,000 unacked.
pub const ROUTER_CONCURRENCY: usize = 256;

/// What the router needs to run.
pub struct Settings {
    /// The loaded integration file (sources and routes are used), until a reload replaces it.
    pub integration: Arc<Integration>,
    /// A connected NATS client.
    pub nats: async_nats::Client,
    /// Stream, subject and consumer names.
    pub topology: Topology,
    /// Where to reload the integration file from while running; `None` never reloads.
    pub reload: Option<Reload>,
    /// The admin API's listener and token; `None` serves no admin API.
    pub admin: Option<admin::Settings>,
    /// Deliveries of one inbound message after which it is dead-letterered with the reason
    /// `router_gave_up` (see the crate docs).
    pub max_deliver: u32,
}

/// Default of [`Settings::max_deliver`]: with [`ROUTER_BACKOFF`], about ten minutes of failing
/// publishes before an event is set aside.
pub const ROUTER_MAX_DELIVER: u32 = 25;

/// Reloading the integration file while the router runs (see the crate docs).
pub use hookyard_core::reload::Reload;

/// Errors of the router.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gRPC health server failed.
    #[error("failed to serve grpc health")]
    Serve(#[source] tonic::transport::Error),
    /// A stream could not be created or updated (retried at start).
    #[error("failed to set up streams")]
    Streams(#[source] StreamSetupError),
    /// The router consumer could not be created or updated (retried at start).
    #[error("failed to create or update consumer {consumer}")]
    Consumer {
        /// Consumer name.
        consumer: String,
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    /// A publish was not acknowledged by JetStream (the inbound message is retried).
    #[error("failed to publish to {subject}")]
    Publish {
        /// Subject published to.
        subject: String,
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
}

/// Runs the router until `shutdown` is cancelled: sets up the streams and the router consumer
/// (retrying until NATS answers; health is NOT_SERVING until then), then routes events. On
/// shutdown it stops pulling, returns fetched but unstarted messages, and lets in-flight ones
/// finish (each is bounded by the publish timeout).
pub async fn run(
    mut settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let admin_settings = settings.admin.take();
    let (reporter, health_service) = health::service();
    health::set_serving(&reporter, false).await;
    // The health server stopping for any reason stops the service too, so it is never running
    // without being observable.
    let stop = shutdown.child_token();

    let (metrics, registry) = metrics::Metrics::new();
    let serve = async {
        let served = hookyard_core::metrics::serve_grpc(
            tonic::service::Routes::new(health_service),
            registry,
            listener,
            stop.cancelled(),
        )
        .await;
        stop.cancel();
        served
    };

    let table = Arc::new(table::Table::new(settings.integration.clone()));
    // Starts with the service, not after stream setup, so edits made while NATS is away are
    // picked up as well; it stops with the service.
    let watch = async {
        if let Some(reload) = settings.reload.clone() {
            let table = table.clone();
            hookyard_core::reload::watch(reload, SecretScope::None, stop.clone(), move |i| {
                table.replace(i);
                Ok(())
            })
            .await;
        }
    };

    let work = async {
        let js = jetstream::new(settings.nats.clone());
        let Some(consumer) = setup(&js, &settings.topology, &stop).await else {
            return;
        };
        health::set_serving(&reporter, true).await;
        info!(consumer = %settings.topology.router_consumer(), "router started");
        let movers = Arc::new(wait::Context {
            js: js.clone(),
            topology: settings.topology.clone(),
            metrics: metrics.clone(),
        });
        let ctx = Arc::new(consume::Context {
            table: table.clone(),
            metrics: metrics.clone(),
            js,
            batcher: batch::Batcher::start(settings.nats.clone(), settings.topology.clone()),
            topology: settings.topology.clone(),
            max_deliver: settings.max_deliver.max(1),
        });
        tokio::join!(
            consume::run(consumer, ctx, &stop),
            wait::run(movers, table.clone(), stop.clone())
        );
        health::set_serving(&reporter, false).await;
        info!("router stopped");
    };

    // The admin API stopping stops the router too, like the health server.
    let admin = async {
        let Some(admin) = admin_settings else {
            return Ok(());
        };
        let (nats, topology) = (settings.nats.clone(), settings.topology.clone());
        let served = admin::serve(admin, nats, topology, table.clone(), stop.clone()).await;
        stop.cancel();
        served
    };

    let (served, (), (), admin) = tokio::join!(serve, work, watch, admin);
    served.and(admin).map_err(Error::Serve)
}

/// Creates or updates the streams and the router consumer, retrying with backoff until NATS
/// answers; `None` when `stop` is cancelled first.
async fn setup(
    js: &jetstream::Context,
    topology: &Topology,
    stop: &CancellationToken,
) -> Option<PullConsumer> {
    retry::until_ok(
        stop,
        || try_setup(js, topology),
        |attempt, error| warn!(attempt, error = %report(error), "stream setup failed, retrying"),
    )
    .await
}

async fn try_setup(js: &jetstream::Context, topology: &Topology) -> Result<PullConsumer, Error> {
    topology.ensure_in(js).await.map_err(Error::Streams)?;
    topology
        .ensure_work_and_dlq(js)
        .await
        .map_err(Error::Streams)?;
    topology.ensure_wait(js).await.map_err(Error::Streams)?;
    let name = topology.router_consumer();
    js.create_consumer_on_stream(consumer_config(topology), topology.in_stream())
        .await
        .map_err(|source| Error::Consumer {
            consumer: name,
            source,
        })
}

/// The durable consumer every router replica shares on the in stream.
pub fn consumer_config(topology: &Topology) -> jetstream::consumer::pull::Config {
    jetstream::consumer::pull::Config {
        durable_name: Some(topology.router_consumer()),
        description: Some("hookyard router: routes every accepted event".to_owned()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: ROUTER_ACK_WAIT,
        // Unlimited: the router bounds deliveries itself and dead-letters past the bound, where
        // JetStream would silently stop delivering (see the crate docs).
        max_deliver: -1,
        deliver_policy: jetstream::consumer::DeliverPolicy::All,
        ..Default::default()
    }
}

/// Delay before redelivering an inbound message delivered `delivered` times.
pub fn retry_delay(delivered: i64) -> Duration {
    let index = usize::try_from(delivered.saturating_sub(1))
        .unwrap_or(0)
        .min(ROUTER_BACKOFF.len() - 1);
    ROUTER_BACKOFF[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_then_repeats_the_last_entry() {
        assert_eq!(retry_delay(1), ROUTER_BACKOFF[0]);
        assert_eq!(retry_delay(2), ROUTER_BACKOFF[1]);
        assert_eq!(retry_delay(5), ROUTER_BACKOFF[4]);
        assert_eq!(retry_delay(500), ROUTER_BACKOFF[4]);
        // a missing or bogus delivery count never panics
        assert_eq!(retry_delay(0), ROUTER_BACKOFF[0]);
        assert_eq!(retry_delay(-3), ROUTER_BACKOFF[0]);
    }

    #[test]
    fn router_consumer_never_gives_up_and_acks_explicitly() {
        let c = consumer_config(&Topology::new("t"));
        assert_eq!(c.max_deliver, -1);
        assert_eq!(c.durable_name.as_deref(), Some("router"));
        assert_eq!(c.ack_policy, jetstream::consumer::AckPolicy::Explicit);
    }
}
