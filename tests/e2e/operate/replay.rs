//! `hookyard replay --since` over 1,000 events: a dry run counts them and sends nothing; the
//! replay makes exactly 1,000 new partner calls, each with a new idempotency key per event.

use std::collections::BTreeSet;

use futures::{StreamExt as _, stream};
use serde_json::json;

use super::{hookyard, num};
use crate::harness::*;

const EVENTS: usize = 1000;

const ORDERS: &str = r#"
[[routes]]
event = "order.*"
handlers = ["orders"]

[[routes]]
event = "customer.*"
handlers = ["orders"]

[handlers.orders]
concurrency = 32

[[handlers.orders.steps]]
type = "http"
connection = "erp"
path = "/v1/orders"
"#;

/// Sends like a real sender: a 503 (NATS busy on a loaded machine) is retried after its
/// `Retry-After`, with the same delivery id, so the event is stored once.
async fn accepted_with_retries(
    stack: &Stack,
    delivery: &str,
    body: &serde_json::Value,
) -> anyhow::Result<String> {
    for _ in 0..30 {
        let response = stack
            .send("/hooks/shop", "order.created", delivery, body)
            .await?;
        if response.status() == 503 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        anyhow::ensure!(response.status() == 202, "got {}", response.status());
        let v: serde_json::Value = response.json().await?;
        return Ok(v["id"].as_str().unwrap_or_default().to_owned());
    }
    anyhow::bail!("still 503 after 30 tries")
}

async fn work_stream_last_sequence(stack: &Stack) -> anyhow::Result<u64> {
    let js = async_nats::jetstream::new(stack.client.clone());
    let mut s = js.get_stream(stack.topology.work_stream()).await?;
    Ok(s.info().await?.state.last_sequence)
}

#[tokio::test]
async fn replay_since_sends_each_event_once_more_and_a_dry_run_sends_nothing() -> anyhow::Result<()>
{
    let (stack, partner, _auth) = super::stack_with_working_partner(ORDERS).await?;

    let sent: Vec<anyhow::Result<String>> = stream::iter(0..EVENTS)
        .map(|n| {
            let stack = &stack;
            async move {
                let body = json!({"order": {"id": format!("o-{n}")}});
                accepted_with_retries(stack, &format!("r-{n}"), &body).await
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let ids: BTreeSet<String> = sent.into_iter().collect::<anyhow::Result<_>>()?;
    // One event of another type, which the type filter leaves out.
    stack
        .accepted("customer.created", "c-1", &json!({"customer": 1}))
        .await?;
    wait_requests(&partner, "/v1/orders", EVENTS + 1).await?;
    hookyard_testkit::wait_for(PATIENCE, "orders idle", || stack.handler_idle("orders")).await?;
    partner.reset().await;
    super::answer_all(&partner, 200).await;

    let range = [
        "--since",
        "1h",
        "--source",
        "shop",
        "--type",
        "order.*",
        "--handler",
        "orders",
    ];
    let before = work_stream_last_sequence(&stack).await?;
    let dry = hookyard(
        &stack,
        &[&["replay"], &range[..], &["--dry-run", "--json"]].concat(),
    )
    .await?;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let record = &dry.lines()?[0];
    assert_eq!(record["dry_run"], true);
    assert_eq!(
        num(&record["events"]),
        EVENTS as u64,
        "the other type is not selected"
    );
    assert_eq!(num(&record["work_items"]), EVENTS as u64);
    assert_eq!(
        work_stream_last_sequence(&stack).await?,
        before,
        "a dry run stores no work item"
    );

    let args = [
        &["replay"],
        &range[..],
        &["--idempotency-key", "new", "--json"],
    ]
    .concat();
    let replay = hookyard(&stack, &args).await?;
    assert_eq!(replay.code, 0, "{}", replay.stderr);
    let record = &replay.lines()?[0];
    assert_eq!(num(&record["work_items"]), EVENTS as u64);
    let replay_id = record["id"].as_str().unwrap_or_default().to_owned();
    assert!(replay_id.starts_with("rpl_"));
    assert_eq!(
        work_stream_last_sequence(&stack).await?,
        before + EVENTS as u64,
        "one new work item per event"
    );

    wait_requests(&partner, "/v1/orders", EVENTS).await?;
    hookyard_testkit::wait_for(PATIENCE, "orders idle", || stack.handler_idle("orders")).await?;
    let calls = requests_to(&partner, "/v1/orders").await;
    assert_eq!(calls.len(), EVENTS, "exactly one new call per event");
    let keys: BTreeSet<String> = calls
        .iter()
        .filter_map(|c| header(c, "idempotency-key"))
        .collect();
    let expected: BTreeSet<String> = ids
        .iter()
        .map(|id| format!("{id}:orders:{replay_id}"))
        .collect();
    assert_eq!(keys, expected, "a new key per event, naming the replay");
    stack.stop().await;
    Ok(())
}
