//! The audit trail in a real JetStream: one record per attempt, with the event id, statuses
//! and errors, and without secrets.

use std::time::Duration;

use hookyard_core::streams::Topology;
use hookyard_testkit::{Nats, unique_namespace, wait_for};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::{HEADER_KEY, QUERY_KEY, Services, Targets, call, config, integration};

async fn records(js: &async_nats::jetstream::Context, stream: &str) -> Vec<Value> {
    let Ok(mut stream) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let Ok(info) = stream.info().await else {
        return Vec::new();
    };
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    for seq in first..=last {
        if let Ok(message) = stream.get_raw_message(seq).await {
            out.push(serde_json::from_slice(&message.payload).expect("json record"));
        }
    }
    out
}

/// A NATS server, a client of it, a namespace, and an audit recording into it.
async fn audited() -> (Nats, async_nats::Client, Topology, hookyard_egress::Audit) {
    let nats = Nats::start().await.expect("nats");
    let client = nats.client().await.expect("client");
    let mut topology = Topology::new(&unique_namespace("eg"));
    topology.limits.audit_max_bytes = 16 * 1024 * 1024;
    let audit = hookyard_egress::Audit::start(client.clone(), &topology, CancellationToken::new());
    (nats, client, topology, audit)
}

#[tokio::test]
async fn every_attempt_is_recorded_without_secrets() {
    let (_nats, client, topology, audit) = audited().await;
    let partner = MockServer::start().await;
    Mock::given(matchers::path("/orders"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&partner)
        .await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&partner)
        .await;
    let services = Services::spawn_egress_audited(
        integration(
            &(config(&Targets {
                partner: &partner.uri(),
                authorization_server: "http://127.0.0.1:9",
            }) + "[connections.metadata]\nbase_url = \"http://169.254.169.254\"\n"),
        ),
        Some("http://127.0.0.1:9".to_owned()),
        Some(audit),
        CancellationToken::new(),
    )
    .await;

    let mut request = call("query", "PUT", "/orders?page=2&access_token=tok-SECRET");
    request.idempotency_key = "evt-7:orders".to_owned();
    let response = services.call(request).await.expect("call");
    assert_eq!(response.attempts, 2);
    services
        .call(call("header", "GET", "/x"))
        .await
        .expect("call");
    let mut down = call("down-query", "GET", "/x");
    down.event_id = "evt-8".to_owned();
    services.call(down).await.expect_err("down");
    services
        .call(call("metadata", "GET", "/latest/meta-data?token=t-SECRET"))
        .await
        .expect_err("refused");

    let js = async_nats::jetstream::new(client);
    let stream = topology.audit_stream();
    wait_for(Duration::from_secs(10), "7 audit records", || async {
        records(&js, &stream).await.len() >= 7
    })
    .await
    .expect("records");
    let all = records(&js, &stream).await;
    assert_eq!(all.len(), 7, "{all:?}");

    let text = serde_json::to_string(&all).expect("json");
    for secret in [QUERY_KEY, HEADER_KEY, "tok-SECRET", "t-SECRET"] {
        assert!(!text.contains(secret), "{secret} in the audit: {text}");
    }
    let query: Vec<&Value> = all.iter().filter(|r| r["connection"] == "query").collect();
    assert_eq!(query.len(), 2);
    for (n, record) in query.iter().enumerate() {
        assert_eq!(record["attempt"], n as u64 + 1);
        assert_eq!(record["method"], "PUT");
        assert_eq!(record["event_id"], "evt-7");
        let url = record["url"].as_str().expect("url");
        assert!(url.contains("page=2"), "{url}");
        assert!(
            url.contains("api_key=REDACTED") && url.contains("access_token=REDACTED"),
            "{url}"
        );
        assert!(record["latency_ms"].is_u64());
    }
    assert_eq!(query[0]["status"], 503);
    assert_eq!(query[1]["status"], 200);
    let down: Vec<&Value> = all
        .iter()
        .filter(|r| r["connection"] == "down-query")
        .collect();
    assert_eq!(down.len(), 3, "the default three attempts");
    for record in down {
        assert_eq!(record["error"], "Unavailable");
        assert_eq!(record["event_id"], "evt-8");
        assert!(record.get("status").is_none());
    }
    let refused: Vec<&Value> = all
        .iter()
        .filter(|r| r["connection"] == "metadata")
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["error"], "PermissionDenied");
}

/// A record JetStream could not store (here: the audit stream was deleted) is published again
/// until it is stored, not dropped.
#[tokio::test]
async fn records_not_stored_during_an_outage_are_stored_once_it_ends() {
    let (_nats, client, topology, audit) = audited().await;
    let partner = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;
    let services = Services::spawn_egress_audited(
        integration(&config(&Targets {
            partner: &partner.uri(),
            authorization_server: "http://127.0.0.1:9",
        })),
        Some("http://127.0.0.1:9".to_owned()),
        Some(audit),
        CancellationToken::new(),
    )
    .await;
    let js = async_nats::jetstream::new(client);
    let stream = topology.audit_stream();
    services
        .call(call("header", "GET", "/before"))
        .await
        .expect("call");
    wait_for(Duration::from_secs(10), "the first record", || async {
        records(&js, &stream).await.len() == 1
    })
    .await
    .expect("a record");

    js.delete_stream(&stream).await.expect("stream deleted");
    for n in 0..3 {
        services
            .call(call("header", "GET", &format!("/during/{n}")))
            .await
            .expect("the call does not wait for its audit");
    }
    topology.ensure_audit(&js).await.expect("stream back");
    wait_for(
        Duration::from_secs(20),
        "the outage's 3 records",
        || async { records(&js, &stream).await.len() == 3 },
    )
    .await
    .expect("records published again");
    let urls: Vec<String> = records(&js, &stream)
        .await
        .iter()
        .filter_map(|r| r["url"].as_str().map(str::to_owned))
        .collect();
    for n in 0..3 {
        assert!(
            urls.iter().any(|u| u.ends_with(&format!("/during/{n}"))),
            "{urls:?}"
        );
    }
}
