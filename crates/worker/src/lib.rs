//! The worker: runs one or more named handlers of the integration file. For each work item on
//! `hookyard.work.<handler>` it runs the handler's steps (HTTP calls through egress), then
//! acknowledges it, retries it later with the handler's backoff, or dead-letters it to
//! `hookyard.dlq.<handler>` with the reason.
//!
//! Owns:
//! - `consume`: one durable pull consumer per handler, shared by all replicas (so they split
//!   the load), at most `concurrency` deliveries at once, and the graceful shutdown;
//! - `dispatch`: one delivery — progress acks, ack / NAK-with-delay / dead letter;
//! - `purge`: done items leave `HOOKYARD_WORK` in purges below the consumer's ack floor, not
//!   one synced removal per ack;
//! - `pipeline`: the steps of one attempt, from the first one not completed, with `when`
//!   and `$steps`; `resume`: that progress kept in `HOOKYARD_STEPS` between deliveries;
//! - [`call`]: an `http` step's egress request from its expressions, and its idempotency key;
//!   [`body`]: bodies by content type (answers read as JSON, XML, form, text; bodies written);
//! - [`program`] and [`subprocess`]: `subprocess` steps — programs found at start, the input
//!   document, one-shot runs and pools of long-lived copies; `publish`: `publish` steps;
//! - [`outcome`]: the retry policy as pure functions (what is retryable, which backoff entry).
//! - `record`: the outcome record of every delivery on `hookyard.audit.worker.…` (stream
//!   `HOOKYARD_AUDIT`), best effort, for the admin API's view of an event;
//! - `metrics`: deliveries by outcome and attempt durations per handler, served at
//!   `GET /metrics` on the gRPC listener (which also accepts HTTP/1.1 for Prometheus);
//! - [`reply`]: the `reply` step — the answer for the sender of a `sync` source, published on
//!   core NATS to `hookyard.reply.<event id>` (best effort: nobody may be waiting any more).
//!
//! It does not own partner HTTP, credentials or the SSRF guard (egress), routing (router) nor
//! stream settings ([`hookyard_core::streams`]).
//!
//! # Delivery rules
//!
//! - 2xx from every step: ack. Retryable failures (gRPC UNAVAILABLE, DEADLINE_EXCEEDED,
//!   RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNKNOWN; HTTP 408, 425, 429, 5xx): NAK with the delay
//!   `backoff[delivered - 1]` (last entry repeating) while `delivered < max_deliver`, else
//!   dead-letter as `retries_exhausted`. A plain NAK would ignore the backoff, so it is never
//!   used for retries. Other 4xx, gRPC NOT_FOUND / INVALID_ARGUMENT / FAILED_PRECONDITION /
//!   PERMISSION_DENIED and expression errors: `permanent_failure` at once; an undecodable work
//!   message: `bad_event`.
//! - A dead letter is acknowledged by JetStream before the work message is acked; if its publish
//!   fails, the work message is NAKed with delay instead, so it is never lost.
//! - A call holds its message with progress acks every `ack_wait / 2`, so a slow partner does not
//!   cause a redelivery to another replica mid-call.
//! - Every call carries the idempotency key `<event id>:<handler>` (later steps of a pipeline
//!   append `:<step index>`), so a retry after a lost answer is recognisable by the partner.
//! - A retry resumes at the step that failed (see `resume`); a program's exit 75 or timeout is
//!   retryable, its other failures permanent (see [`subprocess`]).
//!
//! # Why the consumer has no `max_deliver` of its own
//!
//! The worker itself decides when to give up: on the handler's `max_deliver`-th attempt a
//! retryable failure is dead-lettered. If the worker dies during that last attempt (crash,
//! OOM kill, grace exceeded), JetStream redelivers after the ack wait, and that delivery is
//! dead-lettered without calling the partner again; an item that crashes the worker every time
//! is dead-lettered the same way once its deliveries pass the limit. A server-side limit would
//! instead stop delivering and leave the item in the work queue with no dead letter and no log
//! line. Deliveries a shutdown handed back unstarted are not attempts (see [`returns`]).
//!
//! # Shutdown
//!
//! On cancel: no new pulls; messages fetched but not started are kept until the open pull
//! request has ended, then counted as returned and NAKed (never into a request of this
//! replica, which would redeliver them straight back, each time a delivery); in-flight ones
//! finish within `shutdown_grace`; those still running after it are NAKed (returned) and their
//! calls dropped — the idempotency key covers the call that may still reach the partner.

pub mod body;
pub mod call;
mod consume;
mod dispatch;
mod metrics;
pub mod outcome;
mod pipeline;
pub mod program;
mod publish;
mod purge;
mod record;
pub mod reply;
mod resume;
mod returns;
pub mod subprocess;

pub use purge::STRAGGLERS;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use async_nats::jetstream::{self, consumer::PullConsumer};
pub(crate) use hookyard_core::telemetry::report;
use hookyard_core::{
    Integration,
    config::{Handler, Step},
    health, retry,
    streams::{StreamSetupError, Topology, WorkRetention},
};
use hookyard_proto::egress::v1::egress_service_client::EgressServiceClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What the worker needs to run.
pub struct Settings {
    /// The loaded integration file (handlers and connection timeouts are used).
    pub integration: Arc<Integration>,
    /// A connected NATS client.
    pub nats: async_nats::Client,
    /// Stream, subject and consumer names.
    pub topology: Topology,
    /// Names of the handlers this process runs (keys under `[handlers]`).
    pub handlers: Vec<String>,
    /// gRPC endpoint of egress, e.g. `http://127.0.0.1:50052`.
    pub egress_endpoint: String,
    /// How long in-flight deliveries may take to finish after shutdown is requested.
    pub shutdown_grace: Duration,
    /// The integration file's directory: `subprocess` steps' relative `cwd` and program paths
    /// are resolved against it.
    pub base_dir: std::path::PathBuf,
}

/// Errors of the worker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No handler was named.
    #[error("no handler to run (name one with --handler)")]
    NoHandlers,
    /// A named handler is not in the integration file.
    #[error("no handler named {0:?} in the integration file")]
    UnknownHandler(String),
    /// The egress endpoint is not a valid URI.
    #[error("invalid egress endpoint {endpoint:?}")]
    EgressEndpoint {
        /// The endpoint given.
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The gRPC health server failed.
    #[error("failed to serve grpc health")]
    Serve(#[source] tonic::transport::Error),
    /// A stream could not be created or updated (retried at start).
    #[error("failed to set up streams")]
    Streams(#[source] StreamSetupError),
    /// The `HOOKYARD_RETURNS` or `HOOKYARD_STEPS` bucket could not be created or updated
    /// (retried at start).
    #[error("failed to set up a bucket")]
    Bucket(#[source] hookyard_core::streams::BucketSetupError),
    /// A `subprocess` step's program cannot be run (missing, not executable).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Programs(Vec<hookyard_core::config::Problem>),
    /// A handler consumer could not be created or updated (retried at start).
    #[error("failed to create or update consumer {consumer}")]
    Consumer {
        /// Consumer name.
        consumer: String,
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    /// A dead letter was not acknowledged by JetStream (the work item is retried).
    #[error("failed to publish to {subject}")]
    Publish {
        /// Subject published to.
        subject: String,
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
}

impl Error {
    /// True for a configuration error (exit code 64), which retrying cannot fix.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::NoHandlers
                | Self::UnknownHandler(_)
                | Self::EgressEndpoint { .. }
                | Self::Programs(_)
        )
    }
}

/// Checks the handler names against the integration file; returns them without repeats.
pub fn check_handlers(
    integration: &Integration,
    handlers: &[String],
) -> Result<Vec<String>, Error> {
    if handlers.is_empty() {
        return Err(Error::NoHandlers);
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for name in handlers {
        if !integration.handlers.contains_key(name) {
            return Err(Error::UnknownHandler(name.clone()));
        }
        if seen.insert(name.as_str()) {
            out.push(name.clone());
        }
    }
    Ok(out)
}

/// The durable consumer every replica of `name`'s workers shares.
pub fn consumer_config(
    topology: &Topology,
    name: &str,
    handler: &Handler,
) -> jetstream::consumer::pull::Config {
    jetstream::consumer::pull::Config {
        durable_name: Some(topology.handler_consumer(name)),
        description: Some(format!("hookyard worker: handler {name}")),
        filter_subject: topology.work_subject(name),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: handler.ack_wait,
        // Unlimited: the worker dead-letters past the handler's max_deliver (see crate docs).
        max_deliver: -1,
        deliver_policy: jetstream::consumer::DeliverPolicy::All,
        ..Default::default()
    }
}

/// Runs the named handlers until `shutdown` is cancelled. Configuration errors are returned at
/// once; stream and consumer setup is retried until NATS answers (health is NOT_SERVING until
/// then). See the crate docs for delivery and shutdown rules.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let names = check_handlers(&settings.integration, &settings.handlers)?;
    let programs = prepare_programs(&settings, &names)?;
    let egress = egress_client(&settings.egress_endpoint)?;
    let (reporter, health_service) = health::service();
    health::set_serving(&reporter, false).await;
    // The health server stopping for any reason stops the service too.
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
    let shared = Shared {
        js: jetstream::new(settings.nats.clone()),
        egress,
        metrics,
        programs,
    };
    let work = async {
        let Some(loops) = contexts(&settings, &names, &shared, &stop).await else {
            return;
        };
        health::set_serving(&reporter, true).await;
        info!(handlers = ?names, "worker started");
        futures::future::join_all(loops.into_iter().map(|(consumer, ctx)| {
            handle_until_stopped(consumer, ctx, &stop, settings.shutdown_grace)
        }))
        .await;
        for p in shared.programs.values() {
            p.shutdown().await;
        }
        health::set_serving(&reporter, false).await;
        info!("worker stopped");
    };

    let (served, ()) = tokio::join!(serve, work);
    served.map_err(Error::Serve)
}

/// One handler: its pull loop, and beside it the purges of the work items it has done, which
/// end after its last delivery.
async fn handle_until_stopped(
    consumer: PullConsumer,
    ctx: Arc<dispatch::HandlerContext>,
    stop: &CancellationToken,
    grace: Duration,
) {
    let done = CancellationToken::new();
    let consuming = async {
        consume::run(consumer, ctx.clone(), stop, grace).await;
        done.cancel();
    };
    tokio::join!(purge::run(&ctx, &done), consuming);
}

/// The egress client; lazy, so the worker starts while egress is down (calls then fail
/// UNAVAILABLE, a wait).
fn egress_client(endpoint: &str) -> Result<EgressServiceClient<tonic::transport::Channel>, Error> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .map_err(|source| Error::EgressEndpoint {
            endpoint: endpoint.to_owned(),
            source,
        })?
        .connect_lazy();
    // Egress returns partner bodies up to 10 MiB: raise tonic's 4 MiB default to match it.
    Ok(EgressServiceClient::new(channel)
        .max_decoding_message_size(hookyard_core::grpc::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(hookyard_core::grpc::MAX_MESSAGE_BYTES))
}

/// What every handler of this process shares.
struct Shared {
    js: jetstream::Context,
    egress: EgressServiceClient<tonic::transport::Channel>,
    metrics: Arc<metrics::Metrics>,
    programs: std::collections::HashMap<String, Arc<program::Programs>>,
}

/// Each handler's consumer and context, once NATS has answered the setup; `None` when `stop` is
/// cancelled first.
async fn contexts(
    settings: &Settings,
    names: &[String],
    shared: &Shared,
    stop: &CancellationToken,
) -> Option<Vec<(PullConsumer, Arc<dispatch::HandlerContext>)>> {
    let js = &shared.js;
    let records = Arc::new(record::Recorder::start(
        js.clone(),
        settings.topology.clone(),
        shared.metrics.clone(),
    ));
    let mut loops = Vec::with_capacity(names.len());
    for name in names {
        let Some(handler) = settings.integration.handlers.get(name) else {
            continue;
        };
        let (
            consumer,
            Buckets {
                returns,
                steps,
                retention,
            },
        ) = setup(js, &settings.topology, name, handler, stop).await?;
        let ctx = Arc::new(dispatch::HandlerContext {
            name: name.clone(),
            handler: handler.clone(),
            integration: settings.integration.clone(),
            js: js.clone(),
            nats: js.client(),
            topology: settings.topology.clone(),
            egress: shared.egress.clone(),
            metrics: shared.metrics.clone(),
            records: records.clone(),
            returns,
            steps,
            resumes: resumes(handler),
            purges: retention == WorkRetention::Purged,
            acked: purge::Acked::default(),
            programs: shared.programs.get(name).cloned().unwrap_or_default(),
        });
        loops.push((consumer, ctx));
    }
    Some(loops)
}

/// The programs of every subprocess step of the handlers this process runs, found at start.
fn prepare_programs(
    settings: &Settings,
    names: &[String],
) -> Result<std::collections::HashMap<String, Arc<program::Programs>>, Error> {
    let mut programs = std::collections::HashMap::new();
    let mut problems = Vec::new();
    for name in names {
        let Some(handler) = settings.integration.handlers.get(name) else {
            continue;
        };
        match program::Programs::prepare(name, handler, &settings.base_dir) {
            Ok(p) => {
                programs.insert(name.clone(), Arc::new(p));
            }
            Err(found) => problems.extend(found),
        }
    }
    if problems.is_empty() {
        Ok(programs)
    } else {
        Err(Error::Programs(problems))
    }
}

/// True when a step with a side effect has steps after it: the handler's progress is kept, so
/// a retry resumes at the step that failed.
fn resumes(handler: &Handler) -> bool {
    handler
        .steps
        .split_last()
        .is_some_and(|(_, before)| before.iter().any(Step::has_side_effect))
}

/// The KV buckets a handler's deliveries use, and how its done items leave the work stream.
struct Buckets {
    returns: jetstream::kv::Store,
    steps: jetstream::kv::Store,
    retention: WorkRetention,
}

/// Creates or updates the streams and the handler's consumer, retrying with backoff until NATS
/// answers; `None` when `stop` is cancelled first.
async fn setup(
    js: &jetstream::Context,
    topology: &Topology,
    name: &str,
    handler: &Handler,
    stop: &CancellationToken,
) -> Option<(PullConsumer, Buckets)> {
    retry::until_ok(
        stop,
        || try_setup(js, topology, name, handler),
        |attempt, error| {
            warn!(handler = name, attempt, error = %report(error), "consumer setup failed, retrying");
        },
    )
    .await
}

async fn try_setup(
    js: &jetstream::Context,
    topology: &Topology,
    name: &str,
    handler: &Handler,
) -> Result<(PullConsumer, Buckets), Error> {
    let retention = topology
        .ensure_work_and_dlq(js)
        .await
        .map_err(Error::Streams)?;
    let returns = topology.ensure_returns(js).await.map_err(Error::Bucket)?;
    let steps = topology.ensure_steps(js).await.map_err(Error::Bucket)?;
    // Create or update, so changed handler settings (ack wait) apply on restart.
    let consumer = js
        .create_consumer_on_stream(
            consumer_config(topology, name, handler),
            topology.work_stream(),
        )
        .await
        .map_err(|source| Error::Consumer {
            consumer: topology.handler_consumer(name),
            source,
        })?;
    Ok((
        consumer,
        Buckets {
            returns,
            steps,
            retention,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[handlers.orders]
max_deliver = 4
ack_wait = "12s"
steps = [{ type = "http", connection = "erp", path = "/o" }]

[handlers.audit]
steps = [{ type = "http", connection = "erp", path = "/a" }]

[connections.erp]
base_url = "https://erp.example.com"
"#;

    fn integration() -> Integration {
        Integration::parse(CONFIG, &|_| None).expect("valid")
    }

    #[test]
    fn unknown_handler_is_a_config_error_naming_it() {
        let err = check_handlers(&integration(), &["orders".to_owned(), "ordrs".to_owned()])
            .expect_err("unknown");
        assert!(matches!(&err, Error::UnknownHandler(n) if n == "ordrs"));
        assert!(err.is_config());
        assert!(matches!(
            check_handlers(&integration(), &[]),
            Err(Error::NoHandlers)
        ));
    }

    #[test]
    fn repeated_handlers_run_once() {
        let names = ["orders", "audit", "orders"].map(str::to_owned);
        assert_eq!(
            check_handlers(&integration(), &names).expect("valid"),
            ["orders", "audit"]
        );
    }

    #[test]
    fn consumer_leaves_max_deliver_to_the_worker_and_has_the_handlers_ack_wait() {
        let i = integration();
        let t = Topology::new("t");
        let c = consumer_config(&t, "orders", &i.handlers["orders"]);
        assert_eq!(c.max_deliver, -1);
        assert_eq!(c.ack_wait, Duration::from_secs(12));
        assert_eq!(c.filter_subject, "t.hookyard.work.orders");
        assert_eq!(c.durable_name.as_deref(), Some("handler-orders"));
        assert_eq!(c.ack_policy, jetstream::consumer::AckPolicy::Explicit);
        // no consumer backoff: its first entry would become the ack wait (NAK delays are used)
        assert!(c.backoff.is_empty());
    }
}
