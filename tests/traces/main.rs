//! One webhook is one OpenTelemetry trace across the five real services, exported over OTLP to
//! a receiver in this test, and the partner receives the same trace in `traceparent`.
//!
//! Its own test binary: the spans go through this process's global subscriber (the one every
//! service installs, `hookyard_core::telemetry::subscriber`), which the other end-to-end tests
//! must not share.

// The harness serves every end-to-end test; this binary uses part of it.
#[allow(dead_code)]
#[path = "../e2e/harness.rs"]
mod harness;

use std::{
    collections::HashMap,
    io::Write,
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use axum::{Router, body::Bytes, extract::State, routing::post};
use harness::{
    ERP_CLIENT_SECRET, PATIENCE, SHOP_PASSWORD, SHOP_USER, Stack, auth_server, header, requests_to,
    shop_config, wait_requests,
};
use hookyard_core::telemetry::LogFormat;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value::Value, trace::v1::Span,
};
use prost::Message as _;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

const ORDERS: &str = r#"
[[routes]]
event = "order.created"
handlers = ["orders"]

[[handlers.orders.steps]]
type = "http"
connection = "erp"
method = "POST"
path = "/v1/orders"
body = { jq = "{ external_id: .order.id }" }
"#;

const TOKEN: &str = "token-from-as-for-traces";
const SENDER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";

/// Spans the receiver got, as exported.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Span>>>);

impl Received {
    fn all(&self) -> Vec<Span> {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// An OTLP/HTTP trace receiver on loopback; its base URL.
async fn receiver() -> anyhow::Result<(Received, String)> {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(export))
        .with_state(received.clone());
    let (listener, url) = hookyard_testkit::listener().await?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((received, url))
}

async fn export(State(received): State<Received>, body: Bytes) -> Vec<u8> {
    if let (Ok(request), Ok(mut spans)) = (
        ExportTraceServiceRequest::decode(body.as_ref()),
        received.0.lock(),
    ) {
        for resource in request.resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    Vec::new()
}

/// Log lines the services wrote, as the JSON subscriber writes them.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut all) = self.0.lock() {
            all.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

fn hex_id(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans of one trace by name (each name once in these flows).
fn by_name(spans: &[Span], trace: &str) -> HashMap<String, Span> {
    spans
        .iter()
        .filter(|s| hex_id(&s.trace_id) == trace)
        .map(|s| (s.name.clone(), s.clone()))
        .collect()
}

/// Every span a webhook's trace has, in the order they nest, with the service that makes it.
const CHAIN: [(&str, &str); 9] = [
    ("accept", "ingress"),
    ("store", "ingress"),
    ("route", "router"),
    ("deliver", "worker"),
    ("step", "worker"),
    ("call", "egress"),
    ("attempt", "egress"),
    ("token", "token"),
    ("fetch", "token"),
];

/// Each span's parent within the trace: (child, parent).
const PARENTS: [(&str, &str); 8] = [
    ("store", "accept"),
    ("route", "store"),
    ("deliver", "route"),
    ("step", "deliver"),
    ("call", "step"),
    ("attempt", "call"),
    ("token", "call"),
    ("fetch", "token"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_webhook_is_one_trace_through_five_services_to_the_partner() -> anyhow::Result<()> {
    let (received, url) = receiver().await?;
    let (traces, tracer) =
        hookyard_core::trace::start("hookyard-e2e", Some(&url)).map_err(anyhow::Error::msg)?;
    let logs = Logs::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(hookyard_core::telemetry::subscriber(
        LogFormat::Json,
        Some(tracer),
        move || writer.clone(),
    ))?;

    let auth = auth_server(TOKEN, 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/orders"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&partner)
        .await;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), ORDERS)).await?;

    // A sender that traces: its span is the parent of ours.
    let parent = format!("00-{SENDER_TRACE}-{SENDER_SPAN}-01");
    send(&stack, "trace-1", "o-7001", Some(&parent)).await?;
    wait_requests(&partner, "/v1/orders", 1).await?;
    let first = wait_trace(&traces, &received, SENDER_TRACE).await?;
    assert_eq!(hex_id(&first["accept"].parent_span_id), SENDER_SPAN);
    check_chain(&first)?;
    // The first call fetched the token: the token service's spans are in the trace.
    for span in ["token", "fetch"] {
        anyhow::ensure!(
            first.contains_key(span),
            "no {span} span in the first trace"
        );
    }
    check_partner_saw(&partner, 0, SENDER_TRACE, &first["attempt"]).await?;

    // A sender that does not: ingress starts the trace.
    send(&stack, "trace-2", "o-7002", None).await?;
    wait_requests(&partner, "/v1/orders", 2).await?;
    let call = &requests_to(&partner, "/v1/orders").await[1];
    let seen = header(call, "traceparent").context("the partner got a traceparent")?;
    let trace = seen.split('-').nth(1).context("a trace id")?.to_owned();
    assert_ne!(trace, SENDER_TRACE);
    let second = wait_trace(&traces, &received, &trace).await?;
    assert!(
        second["accept"].parent_span_id.is_empty(),
        "a new root at ingress"
    );
    check_chain(&second)?;
    check_partner_saw(&partner, 1, &trace, &second["attempt"]).await?;

    // Log lines within an event's spans carry its trace id.
    let text = logs.text();
    let accepted = text
        .lines()
        .filter(|l| l.contains("\"event accepted\""))
        .collect::<Vec<_>>();
    assert!(
        accepted.iter().any(|l| l.contains(SENDER_TRACE)),
        "the accept log line carries the sender's trace id: {accepted:?}"
    );
    no_secret_in(&received.all(), &text)
}

/// Sends an order webhook, with the sender's `traceparent` when given.
async fn send(
    stack: &Stack,
    delivery: &str,
    order: &str,
    traceparent: Option<&str>,
) -> anyhow::Result<()> {
    let mut request = stack
        .http()
        .post(format!("{}/hooks/shop", stack.ingress))
        .basic_auth(SHOP_USER, Some(SHOP_PASSWORD))
        .header("X-Shop-Topic", "order.created")
        .header("X-Shop-Delivery-Id", delivery)
        .json(&serde_json::json!({ "order": { "id": order } }));
    if let Some(parent) = traceparent {
        request = request.header("traceparent", parent);
    }
    let status = request.send().await?.status();
    anyhow::ensure!(status == 202, "expected 202, got {status}");
    Ok(())
}

/// The spans of `trace` once ingress's, router's, worker's and egress's have arrived.
async fn wait_trace(
    traces: &hookyard_core::trace::Traces,
    received: &Received,
    trace: &str,
) -> anyhow::Result<HashMap<String, Span>> {
    hookyard_testkit::wait_for(PATIENCE, "the trace's spans to be exported", || async {
        traces.flush();
        let spans = by_name(&received.all(), trace);
        [
            "accept", "store", "route", "deliver", "step", "call", "attempt",
        ]
        .iter()
        .all(|n| spans.contains_key(*n))
    })
    .await?;
    Ok(by_name(&received.all(), trace))
}

/// Every span of the chain is the child of the one before it (the token's only when the call
/// fetched a token), and the chain has a span from each of the five services.
fn check_chain(spans: &HashMap<String, Span>) -> anyhow::Result<()> {
    for (child, parent) in PARENTS {
        let (Some(c), Some(p)) = (spans.get(child), spans.get(parent)) else {
            anyhow::ensure!(
                matches!(child, "token" | "fetch"),
                "span {child} or {parent} missing: {:?}",
                spans.keys().collect::<Vec<_>>()
            );
            continue;
        };
        anyhow::ensure!(
            c.parent_span_id == p.span_id,
            "{child} is not a child of {parent}"
        );
    }
    let services: std::collections::BTreeSet<&str> = CHAIN
        .iter()
        .filter(|(name, _)| spans.contains_key(*name))
        .map(|(_, service)| *service)
        .collect();
    anyhow::ensure!(services.len() >= 4, "spans from {services:?}");
    Ok(())
}

/// The partner's `n`-th request carried `trace` with the attempt span as its parent.
async fn check_partner_saw(
    partner: &MockServer,
    n: usize,
    trace: &str,
    attempt: &Span,
) -> anyhow::Result<()> {
    let calls = requests_to(partner, "/v1/orders").await;
    let seen = header(&calls[n], "traceparent").context("the partner got a traceparent")?;
    let parts: Vec<&str> = seen.split('-').collect();
    anyhow::ensure!(parts.len() == 4, "traceparent {seen}");
    anyhow::ensure!(parts[1] == trace, "partner saw trace {}", parts[1]);
    anyhow::ensure!(
        parts[2] == hex_id(&attempt.span_id),
        "the partner's parent is the egress attempt"
    );
    Ok(())
}

/// No span attribute and no log line holds the sender's password, the client secret, the
/// access token, or the order's content.
fn no_secret_in(spans: &[Span], logs: &str) -> anyhow::Result<()> {
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{SHOP_USER}:{SHOP_PASSWORD}"));
    let forbidden = [
        SHOP_PASSWORD,
        ERP_CLIENT_SECRET,
        TOKEN,
        &basic,
        "o-7001",
        "o-7002",
    ];
    let mut values = Vec::new();
    for span in spans {
        for attribute in &span.attributes {
            if let Some(Value::StringValue(v)) =
                attribute.value.as_ref().and_then(|v| v.value.as_ref())
            {
                values.push(format!("{}={v}", attribute.key));
            }
        }
    }
    for secret in forbidden {
        anyhow::ensure!(
            !values.iter().any(|v| v.contains(secret)),
            "a span attribute holds {secret:?}"
        );
        anyhow::ensure!(!logs.contains(secret), "a log line holds {secret:?}");
    }
    eprintln!(
        "secrets scan: {} spans with {} string attributes, {} log lines, none holds any of {} values",
        spans.len(),
        values.len(),
        logs.lines().count(),
        forbidden.len()
    );
    Ok(())
}
