//! `hookyard handlers pause orders` while events arrive: nothing is delivered for orders, nothing
//! is lost (its work waits in the work stream), audit keeps flowing; `resume` delivers it all.

use serde_json::{Value, json};

use super::{fanout, hookyard, num};
use crate::harness::*;

const EVENTS: usize = 10;

async fn orders_status(stack: &Stack) -> Option<Value> {
    let run = hookyard(stack, &["handlers", "--json"]).await.ok()?;
    run.lines()
        .ok()?
        .into_iter()
        .find(|h| h["name"] == "orders")
}

#[tokio::test]
async fn a_paused_handler_holds_its_work_and_resume_delivers_all() -> anyhow::Result<()> {
    let (stack, partner, auth) = super::stack_with_working_partner(&fanout(5)).await?;
    hookyard_testkit::wait_for(PATIENCE, "orders' worker to bind its consumer", || async {
        orders_status(&stack)
            .await
            .is_some_and(|h| h["consumer"] == true)
    })
    .await?;

    let paused = hookyard(&stack, &["handlers", "pause", "orders", "--json"]).await?;
    assert_eq!(paused.code, 0, "{}", paused.stderr);
    assert_eq!(paused.lines()?[0]["paused"], true);

    let mut ids = Vec::new();
    for n in 0..EVENTS {
        let body = json!({"order": {"id": format!("p-{n}")}});
        ids.push(
            stack
                .accepted("order.created", &format!("p-{n}"), &body)
                .await?,
        );
    }
    wait_requests(&partner, "/v1/audit", EVENTS).await?;
    // Everything for orders is routed and waiting: the router is done, the lag is all of it.
    hookyard_testkit::wait_for(PATIENCE, "router idle", || stack.router_idle()).await?;
    hookyard_testkit::wait_for(PATIENCE, "orders' lag to hold every event", || async {
        orders_status(&stack)
            .await
            .is_some_and(|h| num(&h["lag"]) == EVENTS as u64)
    })
    .await?;
    assert!(
        requests_to(&partner, "/v1/orders").await.is_empty(),
        "nothing delivered for a paused handler"
    );
    let table = hookyard(&stack, &["handlers"]).await?;
    assert!(
        table.stdout.contains("yes"),
        "paused shows: {}",
        table.stdout
    );
    // A worker (re)starting creates or updates its consumer: the pause must hold.
    let integration = hookyard_core::Integration::parse(
        &shop_config(&partner.uri(), &auth.uri(), &fanout(5)),
        &|_| Some("x".to_owned()),
    )?;
    let config = hookyard_worker::consumer_config(
        &stack.topology,
        "orders",
        &integration.handlers["orders"],
    );
    async_nats::jetstream::new(stack.client.clone())
        .create_consumer_on_stream(config, stack.topology.work_stream())
        .await?;
    let after_restart = orders_status(&stack).await.unwrap_or_default();
    assert_eq!(
        after_restart["paused"], true,
        "a worker restart keeps the pause"
    );

    let resumed = hookyard(&stack, &["handlers", "resume", "orders", "--json"]).await?;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(resumed.lines()?[0]["paused"], false);
    wait_requests(&partner, "/v1/orders", EVENTS).await?;
    hookyard_testkit::wait_for(PATIENCE, "orders idle", || stack.handler_idle("orders")).await?;
    let keys = counts(
        requests_to(&partner, "/v1/orders")
            .await
            .iter()
            .filter_map(|c| header(c, "idempotency-key")),
    );
    for id in &ids {
        assert_eq!(keys.get(&format!("{id}:orders")), Some(&1), "{keys:?}");
    }
    let unknown = hookyard(&stack, &["handlers", "pause", "nope"]).await?;
    assert_eq!(unknown.code, 3, "an unknown handler is not found");
    stack.stop().await;
    Ok(())
}
