//! Polling sources end to end: a loopback partner that pages its records, polled by ingress
//! through egress on an OAuth 2.0 connection, every record delivered to its handler once.

use std::collections::BTreeMap;

use hookyard_testkit::{
    lister::{Lister, Paging, source_config},
    wait_for,
};

use crate::harness::{PATIENCE, Stack, auth_server, counts};

const TOKEN: &str = "poll-access-token";

/// The lister's orders polled through `erp`, an OAuth 2.0 connection, and delivered to the
/// partner's sink through `sink`.
fn config(partner: &str, auth: &str, pagination: &str) -> String {
    let source = source_config("", pagination, "sink");
    format!(
        r#"{source}
[connections.erp]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
timeout = "5s"
auth = {{ type = "oauth2_client_credentials", token_url = "{auth}/oauth2/token", client_id = "hookyard", client_secret = "${{env:ERP_CLIENT_SECRET}}" }}

[connections.sink]
base_url = "{partner}"
allow_private = ["127.0.0.0/8"]
"#
    )
}

const POLLS_OK: &str = r#"hookyard_ingress_poll_polls_total{source="erp-orders",outcome="ok"}"#;

/// Waits until `n` more polls than `after` succeeded, and returns the count.
async fn polls_after(stack: &Stack, after: u64, n: u64) -> anyhow::Result<u64> {
    wait_for(
        PATIENCE,
        &format!("{n} more successful poll(s)"),
        || async { stack.metric(&stack.ingress, POLLS_OK).await.unwrap_or(0) >= after + n },
    )
    .await?;
    stack.metric(&stack.ingress, POLLS_OK).await
}

/// Waits until the sink got `n` calls, and returns how many it got for each `id/version`.
async fn sunk(partner: &Lister, n: usize) -> anyhow::Result<BTreeMap<String, usize>> {
    wait_for(PATIENCE, &format!("{n} handler call(s)"), || async {
        partner.sunk().await.len() >= n
    })
    .await?;
    Ok(counts(partner.sunk().await).into_iter().collect())
}

fn once_each(keys: &[&str]) -> BTreeMap<String, usize> {
    keys.iter().map(|k| ((*k).to_owned(), 1)).collect()
}

/// Three pages of records, nothing twice, then only what is new or changed.
async fn every_record_once_then_only_news(paging: Paging, pagination: &str) -> anyhow::Result<()> {
    let partner = Lister::start(paging).await;
    for (n, id) in ["o-1", "o-2", "o-3", "o-4", "o-5", "o-6"]
        .iter()
        .enumerate()
    {
        partner.put(id, n as i64 + 1, "created");
    }
    let auth = auth_server(TOKEN, 3600).await;
    let stack = Stack::start(&config(&partner.uri(), &auth.uri(), pagination)).await?;

    let first = ["o-1/1", "o-2/2", "o-3/3", "o-4/4", "o-5/5", "o-6/6"];
    assert_eq!(sunk(&partner, 6).await?, once_each(&first));
    let offsets: Vec<usize> = partner.seen().iter().take(3).map(|s| s.offset).collect();
    assert_eq!(offsets, [0, 2, 4], "three pages");
    // The poll goes through egress, which got the connection's token from the token service.
    let bearer = format!("Bearer {TOKEN}");
    assert!(
        partner
            .seen()
            .iter()
            .all(|s| s.authorization.as_deref() == Some(bearer.as_str())),
        "every poll request carries the token"
    );

    // Polls with nothing new (each reads o-6 again: `since` is inclusive) store nothing.
    let polls = stack.metric(&stack.ingress, POLLS_OK).await?;
    let polls = polls_after(&stack, polls, 2).await?;
    assert!(stack.router_idle().await);
    assert_eq!(stack.stream_len(&stack.topology.in_stream()).await?, 6);
    assert_eq!(partner.sunk().await.len(), 6);
    assert!(
        partner.seen().iter().any(|s| s.since == 6),
        "polled from the cursor"
    );

    // A new record: exactly one new event. A changed one (newer updated_at): one more.
    partner.put("o-7", 7, "created");
    partner.put("o-2", 8, "shipped");
    let mut expected = once_each(&first);
    expected.extend(once_each(&["o-7/7", "o-2/8"]));
    assert_eq!(sunk(&partner, 8).await?, expected);
    polls_after(&stack, polls, 2).await?;
    wait_for(PATIENCE, "the router to be idle", || stack.router_idle()).await?;
    assert_eq!(stack.stream_len(&stack.topology.in_stream()).await?, 8);
    assert!(stack.handler_idle("orders").await);
    assert_eq!(sunk(&partner, 8).await?, expected, "nothing twice");
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn polling_by_a_cursor_field_delivers_every_record_once_then_only_new_and_changed_ones()
-> anyhow::Result<()> {
    every_record_once_then_only_news(
        Paging::Cursor,
        r#"{ type = "cursor", next = ".next", param = "offset" }"#,
    )
    .await
}

#[tokio::test]
async fn polling_by_link_header_delivers_every_record_once_then_only_new_and_changed_ones()
-> anyhow::Result<()> {
    every_record_once_then_only_news(Paging::Link, r#"{ type = "link" }"#).await
}
