//! A partner down for a while: the events end in the handler's dead letters with the reason,
//! `hookyard dlq ls` shows them, and once the partner is back `hookyard dlq replay` delivers
//! each exactly once and the dead letters are gone.

use serde_json::json;

use super::{hookyard, num};
use crate::harness::*;

const EVENTS: usize = 5;

#[tokio::test]
async fn dead_letters_of_a_partner_outage_are_listed_and_replayed_once_each() -> anyhow::Result<()>
{
    let (stack, partner, _auth) = super::stack_with_orders_down().await?;

    let mut ids = Vec::new();
    for n in 0..EVENTS {
        let body = json!({"order": {"id": format!("o-{n}")}});
        ids.push(
            stack
                .accepted("order.created", &format!("d-{n}"), &body)
                .await?,
        );
    }
    hookyard_testkit::wait_for(PATIENCE, "5 dead letters for orders", || async {
        stack
            .dead_letters("orders")
            .await
            .map(|d| d.len())
            .unwrap_or(0)
            == EVENTS
    })
    .await?;

    let listed = hookyard(&stack, &["dlq", "ls", "--handler", "orders", "--json"]).await?;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let letters = listed.lines()?;
    assert_eq!(letters.len(), EVENTS);
    for letter in &letters {
        assert_eq!(letter["handler"], "orders");
        assert_eq!(letter["reason"], "retries_exhausted");
        assert_eq!(letter["last_status"], 503);
        assert_eq!(letter["attempts"], 2);
        assert!(ids.contains(&letter["event_id"].as_str().unwrap_or_default().to_owned()));
    }
    let table = hookyard(&stack, &["dlq", "ls"]).await?;
    assert!(
        table.stdout.contains("retries_exhausted"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("REASON"), "{}", table.stdout);

    // The partner is back.
    partner.reset().await;
    super::answer_all(&partner, 201).await;
    let replayed = hookyard(&stack, &["dlq", "replay", "--handler", "orders", "--json"]).await?;
    assert_eq!(replayed.code, 0, "{}", replayed.stderr);
    let record = &replayed.lines()?[0];
    assert_eq!(num(&record["work_items"]), EVENTS as u64);
    assert_eq!(num(&record["dead_letters_removed"]), EVENTS as u64);

    wait_requests(&partner, "/v1/orders", EVENTS).await?;
    hookyard_testkit::wait_for(PATIENCE, "orders idle", || stack.handler_idle("orders")).await?;
    let calls = requests_to(&partner, "/v1/orders").await;
    let keys = counts(calls.iter().filter_map(|c| header(c, "idempotency-key")));
    assert_eq!(calls.len(), EVENTS, "each delivered once");
    for id in &ids {
        // The original key: a partner that saw an attempt treats this as its retry.
        assert_eq!(keys.get(&format!("{id}:orders")), Some(&1), "{keys:?}");
    }
    assert!(
        requests_to(&partner, "/v1/audit").await.is_empty(),
        "audit not replayed"
    );
    assert!(
        stack.dead_letters("orders").await?.is_empty(),
        "dead letters gone"
    );
    let after = hookyard(&stack, &["dlq", "ls", "--json"]).await?;
    assert_eq!((after.code, after.lines()?.len()), (0, 0));
    let replays = stack_replays(&stack).await?;
    assert_eq!(replays.len(), 1, "the replay is recorded");
    assert_eq!(replays[0].what, "dead letters handler=orders");
    stack.stop().await;
    Ok(())
}

async fn stack_replays(
    stack: &Stack,
) -> anyhow::Result<Vec<hookyard_proto::admin::v1::ReplayRecord>> {
    let mut client = super::admin(stack).await?;
    let page = client
        .list_replays(hookyard_proto::admin::v1::ListReplaysRequest::default())
        .await?
        .into_inner();
    Ok(page.replays)
}
