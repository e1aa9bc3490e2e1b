//! Starting ingress in-process and reading what it stored.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use async_nats::jetstream;
use hookyard_core::{
    Integration,
    config::{DedupKey, Reply, Secret, SecretRef, Signature, Source, SourceAuth},
    envelope::HEADER_EVENT_ID,
    expr::Expr,
    streams::Topology,
};
use hookyard_proto::event::v1::Envelope;
use hookyard_testkit::{unique_namespace, wait_for};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub const USER: &str = "shop";
pub const PASSWORD: &str = "pa:ss word";
/// `max_body_bytes` of both test sources.
pub const LIMIT: usize = 1024;
/// Basic-auth source that takes the dedup key from `X-Delivery-Id`.
pub const SHOP: &str = "/hooks/shop";
/// Source without auth, deduplicated by body hash (so only within the stream's window).
pub const OPEN: &str = "/hooks/open";
/// Source signed the GitHub way with [`GITHUB_SECRET`].
pub const GITHUB: &str = "/hooks/github";
/// The secret of GitHub's documentation example.
pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";
/// Slack-signed source answering Slack's `url_verification` (see `handshake.rs`).
pub const SLACK: &str = "/hooks/slack";
/// POST-only source answering WebSub verification GETs (see `handshake.rs`).
pub const META: &str = "/hooks/meta";

pub fn integration() -> Integration {
    let source = |path: &str, auth: SourceAuth, dedup_key: Option<Expr>| Source {
        path: Some(path.to_owned()),
        poll: None,
        methods: vec!["POST".to_owned(), "PUT".to_owned()],
        auth,
        max_body_bytes: LIMIT as u64,
        event_type: None,
        dedup_key: dedup_key.map(DedupKey::Expr),
        dedup_window: None,
        signature: None,
        handshake: None,
        reply: Reply::default(),
        allow_ips: Vec::new(),
        trusted_proxies: Vec::new(),
        rate_limit: None,
        content_types: Vec::new(),
        read_timeout: Duration::from_secs(10),
    };
    let mut sources = BTreeMap::new();
    sources.insert(
        "shop".to_owned(),
        source(
            SHOP,
            SourceAuth::Basic {
                username: USER.to_owned(),
                password: Some(Secret::from_value(
                    SecretRef::Env("SHOP_PASSWORD".into()),
                    PASSWORD,
                )),
                passwords: Vec::new(),
            },
            Some(Expr::Header("X-Delivery-Id".to_owned())),
        ),
    );
    sources.insert("open".to_owned(), source(OPEN, SourceAuth::None, None));
    let mut github = source(GITHUB, SourceAuth::None, None);
    github.signature = Some(Signature::Github {
        secrets: vec![Secret::from_value(
            SecretRef::Env("GITHUB_SECRET".into()),
            GITHUB_SECRET,
        )],
    });
    sources.insert("github".to_owned(), github);
    let (name, slack) = crate::handshake::slack_source(source(SLACK, SourceAuth::None, None));
    sources.insert(name, slack);
    let (name, meta) = crate::handshake::websub_source(source(META, SourceAuth::None, None));
    sources.insert(name, meta);
    Integration {
        sources,
        ..Default::default()
    }
}

/// A running ingress.
pub struct Ingress {
    pub addr: SocketAddr,
    pub topology: Topology,
    pub js: jetstream::Context,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), hookyard_ingress::Error>>,
}

/// Starts ingress in a fresh namespace and waits until `/readyz` answers 200.
pub async fn spawn(nats: async_nats::Client, publish_timeout: Duration) -> anyhow::Result<Ingress> {
    let ingress = spawn_with(
        nats,
        Topology::new(&unique_namespace("ing")),
        publish_timeout,
    )
    .await?;
    ingress.wait_ready(true).await?;
    Ok(ingress)
}

/// Starts ingress with `topology` without waiting for readiness.
pub async fn spawn_with(
    nats: async_nats::Client,
    topology: Topology,
    publish_timeout: Duration,
) -> anyhow::Result<Ingress> {
    start(nats, topology, publish_timeout, integration()).await
}

/// Starts ingress serving `integration` in a fresh namespace and waits until it is ready.
pub async fn spawn_serving(
    nats: async_nats::Client,
    integration: Integration,
) -> anyhow::Result<Ingress> {
    let topology = Topology::new(&unique_namespace("ing"));
    let ingress = start(nats, topology, Duration::from_secs(5), integration).await?;
    ingress.wait_ready(true).await?;
    Ok(ingress)
}

/// Starts ingress serving `integration` with settings changed by `edit`, and waits until it is
/// ready.
pub async fn spawn_configured(
    nats: async_nats::Client,
    integration: Integration,
    edit: impl FnOnce(&mut hookyard_ingress::Settings),
) -> anyhow::Result<Ingress> {
    let topology = Topology::new(&unique_namespace("ing"));
    let ingress = start_edited(nats, topology, Duration::from_secs(5), integration, edit).await?;
    ingress.wait_ready(true).await?;
    Ok(ingress)
}

/// Starts ingress serving `integration` with `topology`, without waiting for readiness.
pub async fn start(
    nats: async_nats::Client,
    topology: Topology,
    publish_timeout: Duration,
    integration: Integration,
) -> anyhow::Result<Ingress> {
    start_edited(nats, topology, publish_timeout, integration, |_| {}).await
}

async fn start_edited(
    nats: async_nats::Client,
    topology: Topology,
    publish_timeout: Duration,
    integration: Integration,
    edit: impl FnOnce(&mut hookyard_ingress::Settings),
) -> anyhow::Result<Ingress> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut settings =
        hookyard_ingress::Settings::new(Arc::new(integration), nats.clone(), topology.clone());
    settings.publish_timeout = publish_timeout;
    settings.retry_after_secs = 7;
    edit(&mut settings);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(hookyard_ingress::run(settings, listener, shutdown.clone()));
    Ok(Ingress {
        addr,
        topology,
        js: jetstream::new(nats),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()?,
        shutdown,
        task,
    })
}

impl Ingress {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn status(&self, path: &str) -> Option<u16> {
        let response = self.http.get(self.url(path)).send().await.ok()?;
        Some(response.status().as_u16())
    }

    pub async fn wait_ready(&self, ready: bool) -> anyhow::Result<()> {
        let want = if ready { 200 } else { 503 };
        wait_for(Duration::from_secs(30), "readyz", || async move {
            self.status("/readyz").await == Some(want)
        })
        .await
    }

    /// POSTs `body` to the open source.
    pub async fn post_open(&self, body: Vec<u8>) -> anyhow::Result<reqwest::Response> {
        Ok(self.http.post(self.url(OPEN)).body(body).send().await?)
    }

    /// Messages in the in stream.
    pub async fn stored(&self) -> anyhow::Result<u64> {
        let stream = self.js.get_stream(self.topology.in_stream()).await?;
        Ok(stream.cached_info().state.messages)
    }

    /// Every stored message: its `Hookyard-Event-Id`, NATS headers and decoded envelope.
    pub async fn messages(&self) -> anyhow::Result<Vec<(async_nats::HeaderMap, Envelope)>> {
        let stream = self.js.get_stream(self.topology.in_stream()).await?;
        let state = stream.cached_info().state.clone();
        let mut out = Vec::new();
        for seq in state.first_sequence..=state.last_sequence {
            if state.messages == 0 {
                break;
            }
            let m = stream.get_raw_message(seq).await?;
            let envelope = Envelope::decode(m.payload)?;
            if m.headers.get(HEADER_EVENT_ID).map(|v| v.as_str()) != Some(envelope.id.as_str()) {
                bail!("message {seq} has a {HEADER_EVENT_ID} that is not its envelope id");
            }
            out.push((m.headers, envelope));
        }
        Ok(out)
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .context("ingress did not stop")???;
        Ok(())
    }
}

/// The `id` of a 202 answer.
pub async fn accepted_id(response: reqwest::Response) -> anyhow::Result<String> {
    let status = response.status().as_u16();
    if status != 202 {
        bail!("expected 202, got {status}");
    }
    let body: serde_json::Value = response.json().await?;
    body["id"]
        .as_str()
        .map(str::to_owned)
        .context("202 without an id")
}

/// Sends raw bytes as one HTTP/1.1 request and returns the status code of the answer, read
/// without waiting for the server to close.
pub async fn raw_status(addr: SocketAddr, request: &[u8]) -> anyhow::Result<u16> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut read, mut write) = stream.into_split();
    // Written while the answer is read, as a sender that does not wait would: the server may
    // answer (413, 401) before the body is all sent, and a write failing after that is not the
    // server's failure. The write half stays open until the answer is read: closing it is a
    // half-close, on which hyper drops the connection unanswered.
    let request = request.to_vec();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write
    });
    let mut answer = Vec::new();
    let reading = async {
        let mut buf = [0u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            let n = read.read(&mut buf).await?;
            if n == 0 {
                bail!("connection closed before a status line");
            }
            answer.extend_from_slice(&buf[..n]);
        }
        Ok(())
    };
    let read = tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .context("no answer within 10s");
    writer.abort();
    read??;
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))
}
