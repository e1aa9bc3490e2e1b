//! Starts NATS and all five services for one test, and reads what they stored.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::Context;
use hookyard_core::{Integration, streams::Topology};
use hookyard_proto::event::v1::DeadLetter;
use hookyard_testkit::{Nats, unique_namespace, wait_for};
use prost::Message;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// Basic-auth credentials the test sources expect.
pub const SHOP_USER: &str = "shop";
pub const SHOP_PASSWORD: &str = "shop-pass:with:colons";
/// Client secret the test authorization server expects.
pub const ERP_CLIENT_SECRET: &str = "erp-client-secret-value";
/// Signing secret of the test Stripe source (`${env:STRIPE_WEBHOOK_SECRET}`).
pub const STRIPE_WEBHOOK_SECRET: &str = "whsec_e2e_stripe_signing_secret";

/// The token service's encryption key in stacks with a token store (version 1, 32 bytes).
const TOKEN_KEY: &str = "1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

/// Bearer token of the router's admin API in every stack.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";

/// Generous bound for anything the pipeline does; tests wait on conditions, not on time.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Stack {
    pub nats: Nats,
    pub client: async_nats::Client,
    pub topology: Topology,
    pub ingress: String,
    /// Base URLs of the router's and the worker's listeners (gRPC, and `GET /metrics`).
    pub router: String,
    pub worker: String,
    pub egress: String,
    pub token: String,
    /// Base URL of the router's admin API (gRPC and JSON).
    pub admin: String,
    integration: Arc<Integration>,
    http: reqwest::Client,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

fn env(name: &str) -> Option<String> {
    match name {
        "SHOP_PASSWORD" => Some(SHOP_PASSWORD.to_owned()),
        "ERP_CLIENT_SECRET" => Some(ERP_CLIENT_SECRET.to_owned()),
        "STRIPE_WEBHOOK_SECRET" => Some(STRIPE_WEBHOOK_SECRET.to_owned()),
        "CRM_SECRET" => Some(hookyard_testkit::oauth::CLIENT_SECRET.to_owned()),
        _ => None,
    }
}

impl Stack {
    /// Starts NATS and every service for the integration file `config` (secrets:
    /// `${env:SHOP_PASSWORD}`, `${env:ERP_CLIENT_SECRET}`), with workers for all handlers.
    pub async fn start(config: &str) -> anyhow::Result<Self> {
        Self::start_with(config, |_| {}).await
    }

    /// Like [`Stack::start`], with the stream settings changed by `edit` (shorter windows).
    pub async fn start_with(
        config: &str,
        edit: impl FnOnce(&mut Topology),
    ) -> anyhow::Result<Self> {
        Self::start_in(config, edit, &std::env::current_dir()?).await
    }

    /// Like [`Stack::start_with`], for an integration file in `dir`: subprocess steps' programs
    /// and `cwd` are resolved against it.
    pub async fn start_in(
        config: &str,
        edit: impl FnOnce(&mut Topology),
        dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        Self::start_full(config, edit, dir, None).await
    }

    /// Like [`Stack::start`], with the token service keeping tokens in its store and serving
    /// its consent page on `consent`, as `oauth2_authorization_code` connections need.
    pub async fn start_consenting(config: &str, consent: TcpListener) -> anyhow::Result<Self> {
        Self::start_full(config, |_| {}, &std::env::current_dir()?, Some(consent)).await
    }

    async fn start_full(
        config: &str,
        edit: impl FnOnce(&mut Topology),
        dir: &std::path::Path,
        consent: Option<TcpListener>,
    ) -> anyhow::Result<Self> {
        // Before any service runs, so every log line and span of theirs is captured.
        crate::observed::observed();
        let integration = Arc::new(Integration::parse(config, &env).context("test config")?);
        let nats = Nats::start().await?;
        let mut topology = Topology::new(&unique_namespace("e2e"));
        edit(&mut topology);
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();

        let (token_l, token_url) = hookyard_testkit::listener().await?;
        let (egress_l, egress_url) = hookyard_testkit::listener().await?;
        let (router_l, router_url) = hookyard_testkit::listener().await?;
        let (worker_l, worker_url) = hookyard_testkit::listener().await?;
        let (ingress_l, ingress_url) = hookyard_testkit::listener().await?;
        let (admin_l, admin_url) = hookyard_testkit::listener().await?;

        let spawn =
            |name: &'static str, fut: futures::future::BoxFuture<'static, anyhow::Result<()>>| {
                tokio::spawn(async move {
                    if let Err(e) = fut.await {
                        panic!("{name} failed: {e:#}");
                    }
                })
            };

        let store = match consent {
            Some(listener) => Some(hookyard_token::StoreSettings {
                nats: nats.client().await?,
                topology: topology.clone(),
                keys: std::sync::Arc::new(hookyard_token::Keys::parse(TOKEN_KEY)?),
                policy: hookyard_token::Policy::default(),
                consent: Some(listener),
            }),
            None => None,
        };
        let s = hookyard_token::Settings {
            integration: integration.clone(),
            store,
            reload: None,
        };
        let sd = shutdown.clone();
        tasks.push(spawn(
            "token",
            Box::pin(async move { Ok(hookyard_token::run(s, token_l, sd).await?) }),
        ));

        // Audited, so the admin API can show every outbound attempt of an event.
        let audit =
            hookyard_egress::Audit::start(nats.client().await?, &topology, shutdown.clone());
        let s = hookyard_egress::Settings {
            integration: integration.clone(),
            token_endpoint: Some(token_url.clone()),
            reload: None,
            audit: Some(audit),
        };
        let sd = shutdown.clone();
        tasks.push(spawn(
            "egress",
            Box::pin(async move { Ok(hookyard_egress::run(s, egress_l, sd).await?) }),
        ));

        let s = hookyard_router::Settings {
            integration: integration.clone(),
            nats: nats.client().await?,
            topology: topology.clone(),
            reload: None,
            admin: Some(hookyard_router::admin::Settings {
                listener: admin_l,
                token: secrecy::SecretString::from(ADMIN_TOKEN),
                console: hookyard_router::admin::ConsoleSettings {
                    egress_endpoint: Some(egress_url.clone()),
                    consent_url: None,
                    token_endpoint: Some(token_url.clone()),
                },
            }),
            max_deliver: hookyard_router::ROUTER_MAX_DELIVER,
        };
        let sd = shutdown.clone();
        tasks.push(spawn(
            "router",
            Box::pin(async move { Ok(hookyard_router::run(s, router_l, sd).await?) }),
        ));

        let s = hookyard_worker::Settings {
            integration: integration.clone(),
            nats: nats.client().await?,
            topology: topology.clone(),
            handlers: integration.handlers.keys().cloned().collect(),
            egress_endpoint: egress_url.clone(),
            shutdown_grace: Duration::from_secs(5),
            base_dir: dir.to_path_buf(),
        };
        let sd = shutdown.clone();
        tasks.push(spawn(
            "worker",
            Box::pin(async move { Ok(hookyard_worker::run(s, worker_l, sd).await?) }),
        ));

        let mut s = hookyard_ingress::Settings::new(
            integration.clone(),
            nats.client().await?,
            topology.clone(),
        );
        s.publish_timeout = Duration::from_secs(1);
        s.retry_after_secs = 1;
        s.poll.egress_endpoint = Some(egress_url.clone());
        s.poll.lease_ttl = Duration::from_secs(2);
        let sd = shutdown.clone();
        tasks.push(spawn(
            "ingress",
            Box::pin(async move { Ok(hookyard_ingress::run(s, ingress_l, sd).await?) }),
        ));

        let stack = Self {
            client: nats.client().await?,
            nats,
            topology,
            ingress: ingress_url,
            router: router_url,
            worker: worker_url,
            egress: egress_url,
            token: token_url,
            admin: admin_url,
            integration,
            http: reqwest::Client::new(),
            shutdown,
            tasks,
        };
        let http = stack.http.clone();
        let ready = format!("{}/readyz", stack.ingress);
        wait_for(PATIENCE, "ingress to be ready", || {
            let (http, ready) = (http.clone(), ready.clone());
            async move { matches!(http.get(&ready).send().await, Ok(r) if r.status() == 200) }
        })
        .await?;
        Ok(stack)
    }

    /// Sends a webhook to `path` with the shop's credentials.
    pub async fn send(
        &self,
        path: &str,
        topic: &str,
        delivery_id: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(format!("{}{path}", self.ingress))
            .basic_auth(SHOP_USER, Some(SHOP_PASSWORD))
            .header("X-Shop-Topic", topic)
            .header("X-Shop-Delivery-Id", delivery_id)
            .json(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await?)
    }

    /// Sends and expects 202; returns the event id.
    pub async fn accepted(
        &self,
        topic: &str,
        delivery_id: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<String> {
        let r = self.send("/hooks/shop", topic, delivery_id, body).await?;
        anyhow::ensure!(r.status() == 202, "expected 202, got {}", r.status());
        let v: serde_json::Value = r.json().await?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .context("202 body has an id")
    }

    /// Starts one more ingress replica on the same NATS and namespace, returns its base URL
    /// once it is ready. It stops with the stack.
    pub async fn add_ingress(&mut self) -> anyhow::Result<String> {
        let (listener, url) = hookyard_testkit::listener().await?;
        let mut s = hookyard_ingress::Settings::new(
            self.integration.clone(),
            self.nats.client().await?,
            self.topology.clone(),
        );
        s.publish_timeout = Duration::from_secs(1);
        s.retry_after_secs = 1;
        let shutdown = self.shutdown.clone();
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = hookyard_ingress::run(s, listener, shutdown).await {
                panic!("second ingress failed: {e:#}");
            }
        }));
        let ready = format!("{url}/readyz");
        wait_for(PATIENCE, "second ingress to be ready", || {
            let (http, ready) = (self.http.clone(), ready.clone());
            async move { matches!(http.get(&ready).send().await, Ok(r) if r.status() == 200) }
        })
        .await?;
        Ok(url)
    }

    /// True when the router has read and acknowledged everything in the in stream.
    pub async fn router_idle(&self) -> bool {
        let js = async_nats::jetstream::new(self.client.clone());
        let Ok(stream) = js.get_stream(self.topology.in_stream()).await else {
            return false;
        };
        match stream.consumer_info(self.topology.router_consumer()).await {
            Ok(info) => info.num_pending == 0 && info.num_ack_pending == 0,
            Err(_) => false,
        }
    }

    /// The value of one series in `GET {base}/metrics` (0 when absent), e.g.
    /// `hookyard_worker_deliveries_total{handler="orders",outcome="handled"}`.
    pub async fn metric(&self, base: &str, series: &str) -> anyhow::Result<u64> {
        // Counters and gauges of ours are whole numbers.
        Ok(hookyard_testkit::metric(base, series).await? as u64)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Messages currently stored in a stream.
    pub async fn stream_len(&self, stream: &str) -> anyhow::Result<u64> {
        let js = async_nats::jetstream::new(self.client.clone());
        let mut s = js.get_stream(stream).await?;
        Ok(s.info().await?.state.messages)
    }

    /// Every dead letter stored under `hookyard.dlq.<handler>` (or `unrouted`).
    pub async fn dead_letters(&self, handler: &str) -> anyhow::Result<Vec<DeadLetter>> {
        let js = async_nats::jetstream::new(self.client.clone());
        let mut stream = js.get_stream(self.topology.dlq_stream()).await?;
        let state = stream.info().await?.state.clone();
        let subject = self.topology.dlq_subject(handler);
        let mut out = Vec::new();
        if state.messages == 0 {
            return Ok(out);
        }
        for seq in state.first_sequence..=state.last_sequence {
            let Ok(m) = stream.get_raw_message(seq).await else {
                continue;
            };
            if m.subject.as_str() == subject {
                out.push(DeadLetter::decode(m.payload)?);
            }
        }
        Ok(out)
    }

    /// True when the handler's consumer has nothing pending and nothing unacknowledged.
    pub async fn handler_idle(&self, handler: &str) -> bool {
        let js = async_nats::jetstream::new(self.client.clone());
        let Ok(stream) = js.get_stream(self.topology.work_stream()).await else {
            return false;
        };
        match stream
            .consumer_info(self.topology.handler_consumer(handler))
            .await
        {
            Ok(info) => info.num_pending == 0 && info.num_ack_pending == 0,
            Err(_) => false,
        }
    }

    /// Stops every service (gracefully) and waits for them.
    /// Stops every service, then fails the test if any log line or span of this process
    /// holds one of the stacks' secrets.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        if let Some(observed) = crate::observed::observed()
            && let Err(e) = observed.assert_none_holds(&secrets())
        {
            panic!("{e:#}");
        }
    }
}

/// Every secret the stacks are configured with, as written and as they travel.
pub fn secrets() -> Vec<&'static str> {
    use base64::Engine as _;
    static BASIC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let basic = BASIC.get_or_init(|| {
        base64::engine::general_purpose::STANDARD.encode(format!("{SHOP_USER}:{SHOP_PASSWORD}"))
    });
    let key = TOKEN_KEY.split_once(':').map_or(TOKEN_KEY, |(_, k)| k);
    vec![
        SHOP_PASSWORD,
        ERP_CLIENT_SECRET,
        STRIPE_WEBHOOK_SECRET,
        hookyard_testkit::oauth::CLIENT_SECRET,
        ADMIN_TOKEN,
        key,
        basic,
    ]
}

/// Requests wiremock received on `path`, in arrival order.
pub async fn requests_to(server: &wiremock::MockServer, path: &str) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == path)
        .collect()
}

/// Waits until `server` received at least `n` requests on `path`.
pub async fn wait_requests(
    server: &wiremock::MockServer,
    path: &str,
    n: usize,
) -> anyhow::Result<()> {
    wait_for(PATIENCE, &format!("{n} request(s) to {path}"), || async {
        requests_to(server, path).await.len() >= n
    })
    .await
}

pub fn header(r: &wiremock::Request, name: &str) -> Option<String> {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Counts of values, for duplicate checks.
pub fn counts<I: IntoIterator<Item = String>>(items: I) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

/// An integration file for the shop → ERP scenario; `{partner}` and `{auth_server}` are
/// replaced by the mock servers' URLs, `{extra}` appended as is.
pub fn shop_config(partner: &str, auth_server: &str, extra: &str) -> String {
    format!(
        r#"
[sources.shop]
path = "/hooks/shop"
max_body_bytes = 65536
auth = {{ type = "basic", username = "shop", password = "${{env:SHOP_PASSWORD}}" }}
event_type = {{ header = "X-Shop-Topic" }}
dedup_key = {{ header = "X-Shop-Delivery-Id" }}

[connections.erp]
base_url = "{partner}"
# The stand-in partner listens on loopback, which the SSRF guard refuses by default.
allow_private = ["127.0.0.0/8"]
timeout = "5s"

[connections.erp.auth]
type = "oauth2_client_credentials"
token_url = "{auth_server}/oauth2/token"
client_id = "hookyard"
client_secret = "${{env:ERP_CLIENT_SECRET}}"
scopes = ["orders.write"]

{extra}
"#
    )
}

/// Makes the first `times` requests to `path` on `partner` fail with 503 (before any mock
/// mounted for it answers), as a partner that recovers after a blip.
pub async fn fail_first(partner: &wiremock::MockServer, path: &str, times: u64) {
    use wiremock::{Mock, ResponseTemplate, matchers};
    Mock::given(matchers::path(path))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(times)
        .with_priority(1)
        .mount(partner)
        .await;
}

/// A wiremock authorization server issuing `token` for `expires_in` seconds.
pub async fn auth_server(token: &str, expires_in: u64) -> wiremock::MockServer {
    use wiremock::{Mock, ResponseTemplate, matchers};
    let server = wiremock::MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
        })))
        .mount(&server)
        .await;
    server
}
