//! Router integration tests against a real NATS JetStream server: events are published to the
//! in stream as ingress publishes them, and the tests read what the router wrote.

use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use async_nats::{
    HeaderMap,
    jetstream::{self, consumer, message::StreamMessage},
};
use hookyard_core::{
    Integration,
    envelope::NATS_MSG_ID,
    streams::{StreamLimits, Topology},
};
use hookyard_proto::event::v1::{DeadLetter, Envelope, Header, WorkItem};
use hookyard_testkit::{Nats, stored, unique_namespace, wait_for};
use prost::Message as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod batches;
mod isolation;
mod reload;

const LIMIT: Duration = Duration::from_secs(20);

const CONFIG: &str = r#"
[sources.shop]
path = "/hooks/shop"
event_type = { header = "X-Topic" }

[[routes]]
event = "order.*"
handlers = ["orders", "audit"]

[handlers.orders]
steps = [{ type = "http", connection = "erp", path = "/orders" }]

[handlers.audit]
steps = [{ type = "http", connection = "erp", path = "/audit" }]

[connections.erp]
base_url = "https://erp.example.com"
"#;

struct Router {
    topology: Topology,
    js: jetstream::Context,
    /// The gRPC health listener, which also serves `GET /metrics`.
    endpoint: String,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), hookyard_router::Error>>,
}

/// How a test router is set up.
struct Options {
    config: &'static str,
    topology: Topology,
    reload: Option<hookyard_router::Reload>,
    max_deliver: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            config: CONFIG,
            topology: small_topology("rt"),
            reload: None,
            max_deliver: hookyard_router::ROUTER_MAX_DELIVER,
        }
    }
}

impl Router {
    async fn start(nats: &Nats) -> anyhow::Result<Self> {
        Self::start_opts(nats, Options::default()).await
    }

    /// Starts a router routing with [`CONFIG`], reloading it from `reload` when given.
    async fn start_with(
        nats: &Nats,
        reload: Option<hookyard_router::Reload>,
    ) -> anyhow::Result<Self> {
        Self::start_opts(
            nats,
            Options {
                reload,
                ..Options::default()
            },
        )
        .await
    }

    async fn start_opts(nats: &Nats, options: Options) -> anyhow::Result<Self> {
        init_logs();
        let Options {
            config,
            topology,
            reload,
            max_deliver,
        } = options;
        let integration = Arc::new(Integration::parse(config, &|_| None)?);
        let client = nats.client().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(hookyard_router::run(
            hookyard_router::Settings {
                integration,
                nats: client.clone(),
                topology: topology.clone(),
                reload,
                admin: None,
                max_deliver,
            },
            listener,
            shutdown.clone(),
        ));
        wait_for(LIMIT, "router to report serving", || {
            let endpoint = endpoint.clone();
            async move {
                hookyard_core::health::probe(&endpoint, Duration::from_secs(1))
                    .await
                    .is_ok()
            }
        })
        .await?;
        Ok(Self {
            topology,
            js: jetstream::new(client),
            endpoint,
            shutdown,
            task,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(LIMIT, self.task)
            .await
            .context("router did not stop")???;
        Ok(())
    }

    /// Publishes as ingress does: the envelope, with `Nats-Msg-Id` = event id.
    async fn publish_event(&self, event: &Envelope) -> anyhow::Result<()> {
        self.publish_raw(&event.source, &event.id, event.encode_to_vec())
            .await
    }

    async fn publish_raw(
        &self,
        source: &str,
        msg_id: &str,
        payload: Vec<u8>,
    ) -> anyhow::Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MSG_ID, msg_id);
        self.js
            .publish_with_headers(self.topology.in_subject(source), headers, payload.into())
            .await?
            .await?;
        Ok(())
    }

    async fn router_consumer(&self) -> anyhow::Result<consumer::Info> {
        let c: consumer::PullConsumer = self
            .js
            .get_consumer_from_stream(self.topology.router_consumer(), self.topology.in_stream())
            .await?;
        Ok(c.get_info().await?)
    }

    /// Waits until the router acknowledged the first `n` inbound messages and holds none.
    async fn wait_all_acked(&self, n: u64) -> anyhow::Result<()> {
        wait_for(LIMIT, "router to ack every inbound message", || async {
            self.router_consumer().await.is_ok_and(|i| {
                i.ack_floor.stream_sequence == n && i.num_ack_pending == 0 && i.num_pending == 0
            })
        })
        .await
    }
}

/// A topology in a fresh namespace whose streams fit many times in the test server's file
/// store (the default limits reserve 9 GiB, more than the server's 8 GB `max_file_store`).
fn small_topology(prefix: &str) -> Topology {
    const MIB: i64 = 1024 * 1024;
    let mut topology = Topology::new(&unique_namespace(prefix));
    topology.limits = StreamLimits {
        in_max_bytes: 64 * MIB,
        work_max_bytes: 64 * MIB,
        dlq_max_bytes: 64 * MIB,
        ..StreamLimits::default()
    };
    topology
}

/// Logs to the test output, filtered by `RUST_LOG` (default: warnings).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

async fn wait_stored(
    js: &jetstream::Context,
    stream: &str,
    n: usize,
) -> anyhow::Result<Vec<StreamMessage>> {
    wait_for(LIMIT, "messages to be stored", || async {
        stored(js, stream).await.is_ok_and(|m| m.len() >= n)
    })
    .await?;
    let messages = stored(js, stream).await?;
    if messages.len() != n {
        bail!(
            "expected {n} messages in {stream}, found {}",
            messages.len()
        );
    }
    Ok(messages)
}

fn msg_id(m: &StreamMessage) -> Option<&str> {
    m.headers.get(NATS_MSG_ID).map(|v| v.as_str())
}

fn event(id: &str, topic: Option<&str>) -> Envelope {
    Envelope {
        id: id.to_owned(),
        source: "shop".to_owned(),
        received_at_ms: 1,
        method: "POST".to_owned(),
        path: "/hooks/shop".to_owned(),
        headers: topic
            .map(|t| Header {
                name: "X-Topic".to_owned(),
                value: t.as_bytes().to_vec(),
            })
            .into_iter()
            .collect(),
        body: br#"{"order":{"id":"o-1"}}"#.to_vec(),
        dedup_key: id.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn event_routed_to_two_handlers_yields_one_work_item_each_then_is_acked() -> anyhow::Result<()>
{
    let nats = Nats::start().await?;
    let router = Router::start(&nats).await?;
    router
        .publish_event(&event("evt_a", Some("order.created")))
        .await?;

    let work = wait_stored(&router.js, &router.topology.work_stream(), 2).await?;
    for handler in ["orders", "audit"] {
        let subject = router.topology.work_subject(handler);
        let copies: Vec<_> = work
            .iter()
            .filter(|m| m.subject.as_str() == subject)
            .collect();
        assert_eq!(copies.len(), 1, "one work item for {handler}");
        let m = copies[0];
        assert_eq!(msg_id(m), Some(format!("evt_a:{handler}").as_str()));
        let item = WorkItem::decode(m.payload.as_ref())?;
        assert_eq!(item.handler, handler);
        assert_eq!(item.event_type, "order.created");
        assert_eq!(item.event, Some(event("evt_a", Some("order.created"))));
    }
    router.wait_all_acked(1).await?;
    assert!(
        stored(&router.js, &router.topology.dlq_stream())
            .await?
            .is_empty()
    );
    router.stop().await
}

#[tokio::test]
async fn unroutable_and_undecodable_events_are_dead_lettered_with_their_reason()
-> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let router = Router::start(&nats).await?;
    router
        .publish_event(&event("evt_noroute", Some("customer.deleted")))
        .await?;
    router.publish_event(&event("evt_notype", None)).await?;
    let unknown_source = Envelope {
        source: "crm".to_owned(),
        ..event("evt_nosource", Some("order.created"))
    };
    router.publish_event(&unknown_source).await?;
    // an invalid protobuf: a field key that is a truncated varint
    router
        .publish_raw("shop", "evt_bad", vec![0xff, 0xff, 0xff])
        .await?;

    let dead = wait_stored(&router.js, &router.topology.dlq_stream(), 4).await?;
    let unrouted = router.topology.unrouted_subject();
    let mut letters = Vec::new();
    for m in &dead {
        assert_eq!(m.subject.as_str(), unrouted);
        let letter = DeadLetter::decode(m.payload.as_ref())?;
        let id = letter
            .event
            .as_ref()
            .map(|e| e.id.clone())
            .unwrap_or_default();
        assert_eq!(msg_id(m), Some(format!("{id}:unrouted").as_str()));
        assert!(letter.handler.is_empty());
        assert!(!letter.error.is_empty(), "the reason is explained");
        assert!(letter.attempts >= 1);
        letters.push((id, letter));
    }
    let find = |id: &str| {
        letters
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, l)| l)
            .with_context(|| format!("no dead letter for {id}"))
    };
    let noroute = find("evt_noroute")?;
    assert_eq!(noroute.reason, "unrouted");
    assert_eq!(noroute.event_type, "customer.deleted");
    assert_eq!(find("evt_notype")?.reason, "unrouted");
    assert_eq!(find("evt_nosource")?.reason, "unrouted");
    let bad = find("evt_bad")?;
    assert_eq!(bad.reason, "bad_event");
    let raw = bad.event.as_ref().context("raw event kept")?;
    assert_eq!(raw.body, vec![0xff, 0xff, 0xff], "the raw bytes are kept");
    assert_eq!(raw.source, "shop");

    router.wait_all_acked(4).await?;
    assert!(
        stored(&router.js, &router.topology.work_stream())
            .await?
            .is_empty()
    );
    router.stop().await
}

/// The inbound message must stay unacknowledged while its work items cannot be stored, and be
/// delivered once the work stream is back.
#[tokio::test]
async fn event_is_retried_not_acked_while_work_stream_is_missing_then_delivered()
-> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let router = Router::start(&nats).await?;
    router
        .js
        .delete_stream(router.topology.work_stream())
        .await?;
    router
        .publish_event(&event("evt_w", Some("order.paid")))
        .await?;

    wait_for(
        LIMIT,
        "the event to be redelivered to the router",
        || async {
            router
                .router_consumer()
                .await
                .is_ok_and(|i| i.num_redelivered >= 1 || i.delivered.consumer_sequence >= 2)
        },
    )
    .await?;
    let info = router.router_consumer().await?;
    assert_eq!(info.ack_floor.stream_sequence, 0, "not acked while failing");
    assert_eq!(info.num_pending + info.num_ack_pending as u64, 1);

    router.topology.ensure_work_and_dlq(&router.js).await?;
    let work = wait_stored(&router.js, &router.topology.work_stream(), 2).await?;
    let mut ids: Vec<_> = work.iter().filter_map(msg_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["evt_w:audit", "evt_w:orders"]);
    router.wait_all_acked(1).await?;
    router.stop().await
}
