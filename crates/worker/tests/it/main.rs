//! Worker integration tests against a real NATS JetStream server and a wiremock partner.
//!
//! Egress is stood in for by a minimal in-process `EgressService` (below) that forwards each
//! call to the partner with the `Idempotency-Key` header and records the request, so the tests
//! see exactly what the worker asked for. The real egress crate is not used: services do not
//! depend on one another, and its `run` did not exist when these tests were written.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, bail};
use async_nats::{
    HeaderMap,
    jetstream::{self, consumer, message::StreamMessage},
};
use hookyard_core::{
    Integration,
    envelope::{NATS_MSG_ID, work_msg_id},
    streams::{StreamLimits, Topology},
};
use hookyard_proto::{
    egress::v1::{
        CallRequest, CallResponse,
        egress_service_server::{EgressService, EgressServiceServer},
    },
    event::v1::{DeadLetter, Envelope, WorkItem},
};
use hookyard_testkit::{Nats, stored, unique_namespace, wait_for};
use prost::Message as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

mod rolling;

const LIMIT: Duration = Duration::from_secs(30);
const HANDLER: &str = "orders";

// ---------------------------------------------------------------------------------------------
// A stand-in egress
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<CallRequest>>>);

impl Calls {
    fn all(&self) -> Vec<CallRequest> {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }
    fn len(&self) -> usize {
        self.all().len()
    }
}

struct TestEgress {
    partner: String,
    http: reqwest::Client,
    calls: Calls,
}

#[tonic::async_trait]
impl EgressService for TestEgress {
    async fn test_connection(
        &self,
        _request: tonic::Request<hookyard_proto::egress::v1::TestConnectionRequest>,
    ) -> Result<tonic::Response<hookyard_proto::egress::v1::TestConnectionResponse>, tonic::Status>
    {
        Err(tonic::Status::unimplemented("not used by the worker"))
    }

    async fn call(
        &self,
        request: tonic::Request<CallRequest>,
    ) -> Result<tonic::Response<CallResponse>, tonic::Status> {
        let call = request.into_inner();
        if let Ok(mut calls) = self.calls.0.lock() {
            calls.push(call.clone());
        }
        let method = reqwest::Method::from_bytes(call.method.as_bytes())
            .map_err(|_| tonic::Status::invalid_argument("bad method"))?;
        let mut outbound = self
            .http
            .request(method, format!("{}{}", self.partner, call.path))
            .header("Idempotency-Key", &call.idempotency_key)
            .body(call.body);
        for h in call.headers {
            outbound = outbound.header(h.name, h.value);
        }
        let response = outbound
            .send()
            .await
            .map_err(|_| tonic::Status::unavailable("partner unreachable"))?;
        let status = u32::from(response.status().as_u16());
        let body = response.bytes().await.unwrap_or_default().to_vec();
        Ok(tonic::Response::new(CallResponse {
            status,
            headers: Vec::new(),
            body,
            attempts: 1,
        }))
    }
}

/// Starts a stand-in egress forwarding to `partner`; returns its endpoint and its call log.
async fn start_egress(partner: &str) -> anyhow::Result<(String, Calls)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    serve_egress(listener, partner)
}

/// Serves a stand-in egress on `listener`.
fn serve_egress(
    listener: tokio::net::TcpListener,
    partner: &str,
) -> anyhow::Result<(String, Calls)> {
    let endpoint = format!("http://{}", listener.local_addr()?);
    let calls = Calls::default();
    let service = TestEgress {
        partner: partner.to_owned(),
        http: reqwest::Client::new(),
        calls: calls.clone(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EgressServiceServer::new(service))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    Ok((endpoint, calls))
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A fresh namespace whose streams fit many times in the test server's file store (the default
/// limits reserve 9 GiB, more than the server's 8 GB `max_file_store`).
fn small_topology() -> Topology {
    const MIB: i64 = 1024 * 1024;
    let mut topology = Topology::new(&unique_namespace("wk"));
    topology.limits = StreamLimits {
        in_max_bytes: 64 * MIB,
        work_max_bytes: 64 * MIB,
        dlq_max_bytes: 64 * MIB,
        ..StreamLimits::default()
    };
    topology
}

/// An integration file with handler `orders` (extra settings in `handler`) calling `partner`.
fn integration(partner: &str, handler: &str) -> anyhow::Result<Arc<Integration>> {
    let text = format!(
        r#"
[handlers.{HANDLER}]
{handler}
steps = [{{ type = "http", connection = "partner", method = "POST", path = "/orders" }}]

[connections.partner]
base_url = "{partner}"
"#
    );
    Ok(Arc::new(Integration::parse(&text, &|_| None)?))
}

struct Worker {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), hookyard_worker::Error>>,
}

impl Worker {
    async fn start(
        nats: &Nats,
        topology: &Topology,
        integration: Arc<Integration>,
        egress: &str,
        shutdown_grace: Duration,
    ) -> anyhow::Result<Self> {
        init_logs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let health = format!("http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(hookyard_worker::run(
            hookyard_worker::Settings {
                integration,
                nats: nats.client().await?,
                topology: topology.clone(),
                handlers: vec![HANDLER.to_owned()],
                egress_endpoint: egress.to_owned(),
                shutdown_grace,
                base_dir: std::env::current_dir()?,
            },
            listener,
            shutdown.clone(),
        ));
        wait_for(LIMIT, "worker to report serving", || {
            let health = health.clone();
            async move {
                hookyard_core::health::probe(&health, Duration::from_secs(1))
                    .await
                    .is_ok()
            }
        })
        .await?;
        Ok(Self { shutdown, task })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(LIMIT, self.task)
            .await
            .context("worker did not stop")???;
        Ok(())
    }
}

/// Publishes a work item as the router does.
async fn publish_work(
    js: &jetstream::Context,
    topology: &Topology,
    id: &str,
) -> anyhow::Result<()> {
    let item = WorkItem {
        event: Some(Envelope {
            id: id.to_owned(),
            source: "shop".to_owned(),
            received_at_ms: 1,
            body: br#"{"order":{"id":"o-1"}}"#.to_vec(),
            ..Default::default()
        }),
        handler: HANDLER.to_owned(),
        event_type: "order.created".to_owned(),
        ..Default::default()
    };
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MSG_ID, work_msg_id(id, HANDLER).as_str());
    js.publish_with_headers(
        topology.work_subject(HANDLER),
        headers,
        item.encode_to_vec().into(),
    )
    .await?
    .await?;
    Ok(())
}

async fn handler_consumer(
    js: &jetstream::Context,
    topology: &Topology,
) -> anyhow::Result<consumer::Info> {
    let c: consumer::PullConsumer = js
        .get_consumer_from_stream(topology.handler_consumer(HANDLER), topology.work_stream())
        .await?;
    Ok(c.get_info().await?)
}

/// Waits until the handler consumer acknowledged the first `n` work messages and holds none.
async fn wait_all_acked(
    js: &jetstream::Context,
    topology: &Topology,
    n: u64,
) -> anyhow::Result<()> {
    wait_for(LIMIT, "every work message to be acked", || async {
        handler_consumer(js, topology).await.is_ok_and(|i| {
            i.ack_floor.stream_sequence == n && i.num_ack_pending == 0 && i.num_pending == 0
        })
    })
    .await
}

/// A partner answering every POST with `status` (after the mocks already mounted), egress in
/// front of it, and a worker whose handler has the extra settings `handler`.
async fn worker_with_partner(
    s: &Setup,
    status: u16,
    handler: &str,
) -> anyhow::Result<(Worker, Calls)> {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&s.partner)
        .await;
    let (egress, calls) = start_egress(&s.partner.uri()).await?;
    let config = integration(&s.partner.uri(), handler)?;
    let worker = Worker::start(&s.nats, &s.topology, config, &egress, LIMIT).await?;
    Ok((worker, calls))
}

/// Waits until the work stream holds `n` messages at most (done ones are purged).
async fn wait_work_stream_holds(s: &Setup, n: usize) -> anyhow::Result<()> {
    wait_for(
        LIMIT,
        "done work items to leave the work stream",
        || async {
            stored(&s.js, &s.topology.work_stream())
                .await
                .is_ok_and(|m| m.len() <= n)
        },
    )
    .await
}

/// Waits for exactly one dead letter on the handler's subject and decodes it.
async fn wait_dead_letter(
    js: &jetstream::Context,
    topology: &Topology,
) -> anyhow::Result<(StreamMessage, DeadLetter)> {
    wait_for(LIMIT, "a dead letter", || async {
        stored(js, &topology.dlq_stream())
            .await
            .is_ok_and(|m| !m.is_empty())
    })
    .await?;
    let mut messages = stored(js, &topology.dlq_stream()).await?;
    if messages.len() != 1 {
        bail!("expected one dead letter, found {}", messages.len());
    }
    let m = messages.remove(0);
    let letter = DeadLetter::decode(m.payload.as_ref())?;
    Ok((m, letter))
}

struct Setup {
    nats: Nats,
    js: jetstream::Context,
    topology: Topology,
    partner: MockServer,
}

async fn setup() -> anyhow::Result<Setup> {
    let nats = Nats::start().await?;
    let js = jetstream::new(nats.client().await?);
    Ok(Setup {
        nats,
        js,
        topology: small_topology(),
        partner: MockServer::start().await,
    })
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn retryable_statuses_are_retried_with_the_same_idempotency_key_then_acked()
-> anyhow::Result<()> {
    let s = setup().await?;
    Mock::given(method("POST"))
        .and(path("/orders"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&s.partner)
        .await;
    Mock::given(method("POST"))
        .and(path("/orders"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&s.partner)
        .await;
    let (egress, calls) = start_egress(&s.partner.uri()).await?;
    let config = integration(&s.partner.uri(), "max_deliver = 5\nbackoff = [\"100ms\"]")?;
    let worker = Worker::start(&s.nats, &s.topology, config, &egress, LIMIT).await?;

    publish_work(&s.js, &s.topology, "evt_r").await?;
    wait_all_acked(&s.js, &s.topology, 1).await?;

    let keys: Vec<String> = calls.all().into_iter().map(|c| c.idempotency_key).collect();
    assert_eq!(keys, ["evt_r:orders"; 3]);
    let received = s.partner.received_requests().await.unwrap_or_default();
    assert_eq!(received.len(), 3);
    for r in &received {
        assert_eq!(
            r.headers.get("Idempotency-Key").map(|v| v.as_bytes()),
            Some(&b"evt_r:orders"[..])
        );
    }
    assert!(stored(&s.js, &s.topology.dlq_stream()).await?.is_empty());
    worker.stop().await
}

#[tokio::test]
async fn always_failing_partner_is_dead_lettered_after_max_deliver_attempts() -> anyhow::Result<()>
{
    let s = setup().await?;
    let settings = "max_deliver = 3\nbackoff = [\"100ms\"]";
    let (worker, calls) = worker_with_partner(&s, 500, settings).await?;

    publish_work(&s.js, &s.topology, "evt_x").await?;
    let (m, letter) = wait_dead_letter(&s.js, &s.topology).await?;
    wait_all_acked(&s.js, &s.topology, 1).await?;

    assert_eq!(m.subject.as_str(), s.topology.dlq_subject(HANDLER));
    assert_eq!(
        m.headers.get(NATS_MSG_ID).map(|v| v.as_str()),
        Some("evt_x:orders:dlq")
    );
    assert_eq!(letter.reason, "retries_exhausted");
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.last_status, 500);
    assert_eq!(letter.handler, HANDLER);
    assert_eq!(letter.event_type, "order.created");
    assert_eq!(letter.event.map(|e| e.id).as_deref(), Some("evt_x"));
    assert_eq!(calls.len(), 3);
    wait_work_stream_holds(&s, 0).await?;
    worker.stop().await
}

#[tokio::test]
async fn client_error_is_dead_lettered_after_one_attempt_saying_why() -> anyhow::Result<()> {
    let s = setup().await?;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string(r#"{"error":"unknown sku A-1"}"#))
        .mount(&s.partner)
        .await;
    let (egress, calls) = start_egress(&s.partner.uri()).await?;
    let config = integration(&s.partner.uri(), "max_deliver = 5\nbackoff = [\"100ms\"]")?;
    let worker = Worker::start(&s.nats, &s.topology, config, &egress, LIMIT).await?;

    publish_work(&s.js, &s.topology, "evt_p").await?;
    let (_, letter) = wait_dead_letter(&s.js, &s.topology).await?;
    wait_all_acked(&s.js, &s.topology, 1).await?;

    assert_eq!(letter.reason, "permanent_failure");
    assert_eq!(
        letter.error,
        r#"step 0: the partner answered HTTP 400: {"error":"unknown sku A-1"}"#
    );
    assert_eq!(letter.attempts, 1);
    assert_eq!(letter.last_status, 400);
    assert_eq!(calls.len(), 1);
    worker.stop().await
}

/// Egress unreachable for longer than the handler's deliveries would last: every delivery
/// finds nobody to call, none of them is an attempt, and everything is delivered once egress is
/// up — nothing dead-lettered.
#[tokio::test]
async fn egress_unreachable_spends_no_delivery_and_dead_letters_nothing() -> anyhow::Result<()> {
    let s = setup().await?;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&s.partner)
        .await;
    // An address nothing listens on yet; egress will start on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = integration(&s.partner.uri(), "max_deliver = 2\nbackoff = [\"100ms\"]")?;
    let worker = Worker::start(&s.nats, &s.topology, config, &endpoint, LIMIT).await?;
    let events = 5;
    for n in 0..events {
        publish_work(&s.js, &s.topology, &format!("evt_down{n}")).await?;
    }
    // Every event delivered more often than max_deliver allows attempts, while egress is down.
    wait_for(LIMIT, "deliveries past max_deliver", || async {
        handler_consumer(&s.js, &s.topology)
            .await
            .is_ok_and(|i| i.delivered.consumer_sequence >= events * 3)
    })
    .await?;
    assert!(stored(&s.js, &s.topology.dlq_stream()).await?.is_empty());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let (_, calls) = serve_egress(listener, &s.partner.uri())?;
    wait_all_acked(&s.js, &s.topology, events).await?;
    assert!(stored(&s.js, &s.topology.dlq_stream()).await?.is_empty());
    assert_eq!(calls.len() as u64, events, "one call per event");
    worker.stop().await
}

#[tokio::test]
async fn two_workers_on_one_handler_split_the_work_and_handle_each_item_once() -> anyhow::Result<()>
{
    const ITEMS: usize = 20;
    let s = setup().await?;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(100)))
        .mount(&s.partner)
        .await;
    let config = integration(&s.partner.uri(), "concurrency = 2")?;
    let (egress_a, calls_a) = start_egress(&s.partner.uri()).await?;
    let (egress_b, calls_b) = start_egress(&s.partner.uri()).await?;
    let a = Worker::start(&s.nats, &s.topology, config.clone(), &egress_a, LIMIT).await?;
    let b = Worker::start(&s.nats, &s.topology, config, &egress_b, LIMIT).await?;

    for n in 0..ITEMS {
        publish_work(&s.js, &s.topology, &format!("evt_{n}")).await?;
    }
    wait_all_acked(&s.js, &s.topology, ITEMS as u64).await?;

    let (from_a, from_b) = (calls_a.all(), calls_b.all());
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "both replicas got work"
    );
    let mut keys: Vec<String> = from_a
        .into_iter()
        .chain(from_b)
        .map(|c| c.idempotency_key)
        .collect();
    assert_eq!(keys.len(), ITEMS, "no item handled twice");
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), ITEMS, "every item handled");
    assert_eq!(
        handler_consumer(&s.js, &s.topology).await?.num_redelivered,
        0
    );
    a.stop().await?;
    b.stop().await
}

/// The call outlives the ack wait (1 s) too: progress acks must keep it from being redelivered.
#[tokio::test]
async fn shutdown_lets_an_in_flight_call_finish_and_acks_it() -> anyhow::Result<()> {
    let s = setup().await?;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(2500)))
        .mount(&s.partner)
        .await;
    let (egress, calls) = start_egress(&s.partner.uri()).await?;
    let config = integration(&s.partner.uri(), "ack_wait = \"1s\"")?;
    let worker = Worker::start(&s.nats, &s.topology, config, &egress, LIMIT).await?;

    publish_work(&s.js, &s.topology, "evt_slow").await?;
    wait_for(LIMIT, "the call to start", || async { calls.len() == 1 }).await?;
    worker.stop().await?;

    let info = handler_consumer(&s.js, &s.topology).await?;
    assert_eq!(info.ack_floor.stream_sequence, 1, "acked before stopping");
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_pending, 0);
    assert_eq!(info.num_redelivered, 0);
    assert_eq!(calls.len(), 1);
    assert!(stored(&s.js, &s.topology.work_stream()).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn shutdown_returns_an_event_still_running_when_the_grace_ends() -> anyhow::Result<()> {
    let s = setup().await?;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(20)))
        .mount(&s.partner)
        .await;
    let (egress, calls) = start_egress(&s.partner.uri()).await?;
    let config = integration(&s.partner.uri(), "")?;
    let worker = Worker::start(
        &s.nats,
        &s.topology,
        config,
        &egress,
        Duration::from_millis(300),
    )
    .await?;

    publish_work(&s.js, &s.topology, "evt_hung").await?;
    wait_for(LIMIT, "the call to start", || async { calls.len() == 1 }).await?;
    worker.stop().await?;

    // Returned at once (NAK), not held until the 30 s ack wait: a new replica gets it well
    // before then.
    let info = handler_consumer(&s.js, &s.topology).await?;
    assert_eq!(info.ack_floor.stream_sequence, 0, "not acked");
    s.partner.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&s.partner)
        .await;
    let (egress, calls) = start_egress(&s.partner.uri()).await?;
    let config = integration(&s.partner.uri(), "")?;
    let again = Worker::start(&s.nats, &s.topology, config, &egress, LIMIT).await?;
    let returned_within = Duration::from_secs(10);
    wait_for(
        returned_within,
        "the returned event to be handled",
        || async {
            handler_consumer(&s.js, &s.topology).await.is_ok_and(|i| {
                i.ack_floor.stream_sequence == 1 && i.num_ack_pending == 0 && i.num_pending == 0
            })
        },
    )
    .await?;
    assert_eq!(calls.len(), 1);
    again.stop().await?;
    Ok(())
}

/// The work stream has limits retention: done items leave it in purges below the ack floor,
/// not in one synced removal per acknowledgement.
#[tokio::test]
async fn done_items_are_purged_from_the_work_stream() -> anyhow::Result<()> {
    const ITEMS: u64 = 50;
    let s = setup().await?;
    let (worker, _) = worker_with_partner(&s, 200, "").await?;
    let mut stream = s.js.get_stream(s.topology.work_stream()).await?;
    assert_eq!(
        stream.info().await?.config.retention,
        jetstream::stream::RetentionPolicy::Limits
    );
    for n in 0..ITEMS {
        publish_work(&s.js, &s.topology, &format!("evt_{n}")).await?;
    }
    wait_all_acked(&s.js, &s.topology, ITEMS).await?;
    wait_work_stream_holds(&s, 0).await?;
    worker.stop().await
}

/// An item retried with a long backoff holds the ack floor, so nothing after it is purged; the
/// done items after it are removed one by one once a process holds `STRAGGLERS` of them, so
/// they cannot fill the handler's share of the stream. The retried item itself stays.
#[tokio::test]
async fn an_item_in_a_long_backoff_does_not_keep_the_done_items_after_it() -> anyhow::Result<()> {
    let done = 2 * hookyard_worker::STRAGGLERS;
    let s = setup().await?;
    Mock::given(method("POST"))
        .and(wiremock::matchers::header(
            "Idempotency-Key",
            "evt_stuck:orders",
        ))
        .respond_with(ResponseTemplate::new(503))
        .mount(&s.partner)
        .await;
    let settings = "concurrency = 32\nmax_deliver = 3\nbackoff = [\"1h\"]";
    let (worker, _) = worker_with_partner(&s, 200, settings).await?;
    publish_work(&s.js, &s.topology, "evt_stuck").await?;
    for n in 0..done {
        publish_work(&s.js, &s.topology, &format!("evt_{n}")).await?;
    }
    wait_for(
        LIMIT,
        "every item but the stuck one to be acked",
        || async {
            handler_consumer(&s.js, &s.topology).await.is_ok_and(|i| {
                i.num_pending == 0 && i.num_ack_pending == 1 && i.ack_floor.stream_sequence == 0
            })
        },
    )
    .await?;
    wait_work_stream_holds(&s, hookyard_worker::STRAGGLERS).await?;
    let stream = s.js.get_stream(s.topology.work_stream()).await?;
    assert!(
        stream.get_raw_message(1).await.is_ok(),
        "the item being retried stays in the stream"
    );
    worker.stop().await
}

/// A work stream an earlier version made as a work queue keeps its retention (JetStream cannot
/// change it in place) and still loses its items as they are acknowledged.
#[tokio::test]
async fn a_work_queue_from_an_earlier_version_is_kept_and_emptied_by_acks() -> anyhow::Result<()> {
    let s = setup().await?;
    let mut legacy = s.topology.work_config();
    legacy.retention = jetstream::stream::RetentionPolicy::WorkQueue;
    s.js.create_stream(legacy).await?;
    let (worker, _) = worker_with_partner(&s, 200, "").await?;
    for n in 0..5 {
        publish_work(&s.js, &s.topology, &format!("evt_{n}")).await?;
    }
    wait_all_acked(&s.js, &s.topology, 5).await?;
    let mut stream = s.js.get_stream(s.topology.work_stream()).await?;
    let info = stream.info().await?;
    assert_eq!(
        info.config.retention,
        jetstream::stream::RetentionPolicy::WorkQueue
    );
    assert_eq!(info.state.messages, 0, "removed by the acknowledgements");
    worker.stop().await
}
