//! `hookyard events show ID` for an event fanned out to two handlers: both handlers' attempts
//! with their statuses, from the workers' outcome records and egress's audit.

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use super::{fanout, hookyard};
use crate::harness::*;

fn handler<'a>(shown: &'a Value, name: &str) -> Option<&'a Value> {
    shown["handlers"]
        .as_array()?
        .iter()
        .find(|h| h["handler"] == name)
}

fn count(shown: &Value, name: &str, list: &str) -> usize {
    handler(shown, name)
        .and_then(|h| h[list].as_array())
        .map_or(0, Vec::len)
}

#[tokio::test]
async fn an_event_shows_every_handlers_attempts_with_statuses() -> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::path("/v1/orders"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&partner)
        .await;
    // audit fails once, then works: two attempts.
    Mock::given(matchers::path("/v1/audit"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&partner)
        .await;
    Mock::given(matchers::path("/v1/audit"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&partner)
        .await;
    let config = shop_config(&partner.uri(), &auth.uri(), &fanout(5))
        // One egress attempt per worker attempt, so the audit matches the outcomes.
        .replace(
            "timeout = \"5s\"",
            "timeout = \"5s\"\nretry = { max_attempts = 1 }",
        );
    let stack = Stack::start(&config).await?;
    let id = stack
        .accepted("order.created", "s-1", &json!({"order": {"id": "o-1"}}))
        .await?;
    for h in ["orders", "audit"] {
        wait_requests(
            &partner,
            &format!("/v1/{h}"),
            if h == "audit" { 2 } else { 1 },
        )
        .await?;
    }

    let show = || async {
        let run = hookyard(&stack, &["events", "show", &id, "--json"])
            .await
            .ok()?;
        run.lines().ok()?.into_iter().next()
    };
    let complete = |shown: &Value| {
        count(shown, "orders", "attempts") == 1
            && count(shown, "audit", "attempts") == 2
            && count(shown, "orders", "calls") == 1
            && count(shown, "audit", "calls") == 2
    };
    // Outcome and audit records are written in the background: wait for them.
    hookyard_testkit::wait_for(PATIENCE, "both handlers' records", || async {
        show().await.is_some_and(|s| complete(&s))
    })
    .await?;
    let shown = show().await.unwrap_or_default();

    let orders = handler(&shown, "orders").expect("orders");
    assert_eq!(orders["routed"], true);
    assert_eq!(orders["state"], "handled");
    assert_eq!(orders["attempts"][0]["outcome"], "handled");
    assert_eq!(orders["calls"][0]["status"], 201);
    let audit = handler(&shown, "audit").expect("audit");
    assert_eq!(audit["state"], "handled");
    assert_eq!(audit["attempts"][0]["outcome"], "retry");
    assert_eq!(audit["attempts"][0]["status"], 503);
    assert_eq!(audit["attempts"][1]["outcome"], "handled");
    let statuses: Vec<&Value> = audit["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| &c["status"])
        .collect();
    assert_eq!(statuses, [&json!(503), &json!(200)]);
    assert_eq!(shown["event"]["summary"]["id"], id.as_str());
    assert_eq!(shown["event"]["summary"]["event_type"], "order.created");

    let table = hookyard(&stack, &["events", "show", &id]).await?;
    assert!(
        table.stdout.contains("handler orders (routed): handled"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("handler audit (routed): handled"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("503"), "{}", table.stdout);
    stack.stop().await;
    Ok(())
}
