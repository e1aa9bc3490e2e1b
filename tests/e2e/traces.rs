//! One webhook is one OpenTelemetry trace across the five real services, exported over OTLP to
//! a receiver in this test, and the partner receives the same trace in `traceparent`.
//!
//! The spans go through this process's global subscriber, the one every service installs
//! (see `observed`), to its OTLP receiver.

use std::collections::HashMap;

use crate::{
    harness::{
        self, PATIENCE, SHOP_PASSWORD, SHOP_USER, Stack, auth_server, header, requests_to,
        shop_config, wait_requests,
    },
    observed,
};
use anyhow::Context as _;
use opentelemetry_proto::tonic::trace::v1::Span;
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

#[tokio::test]
async fn one_webhook_is_one_trace_through_five_services_to_the_partner() -> anyhow::Result<()> {
    let observed = observed::observed().context("the log and span capture")?;
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
    let first = wait_trace(observed, SENDER_TRACE).await?;
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
    let second = wait_trace(observed, &trace).await?;
    assert!(
        second["accept"].parent_span_id.is_empty(),
        "a new root at ingress"
    );
    check_chain(&second)?;
    check_partner_saw(&partner, 1, &trace, &second["attempt"]).await?;

    // Log lines within an event's spans carry its trace id.
    let text = observed.logs();
    let accepted = text
        .lines()
        .filter(|l| l.contains("\"event accepted\""))
        .collect::<Vec<_>>();
    assert!(
        accepted.iter().any(|l| l.contains(SENDER_TRACE)),
        "the accept log line carries the sender's trace id: {accepted:?}"
    );
    // Neither the secrets nor the order's content.
    let mut forbidden = harness::secrets();
    forbidden.extend([TOKEN, "o-7001", "o-7002"]);
    observed.assert_none_holds(&forbidden)?;
    stack.stop().await;
    Ok(())
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
    observed: &observed::Observed,
    trace: &str,
) -> anyhow::Result<HashMap<String, Span>> {
    hookyard_testkit::wait_for(PATIENCE, "the trace's spans to be exported", || async {
        let spans = by_name(&observed.spans(), trace);
        [
            "accept", "store", "route", "deliver", "step", "call", "attempt",
        ]
        .iter()
        .all(|n| spans.contains_key(*n))
    })
    .await?;
    Ok(by_name(&observed.spans(), trace))
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
