//! `hookyard tail` prints an accepted event as it arrives. The latency is printed, not
//! asserted: the machine may be loaded.

use std::{process::Stdio, time::Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use super::{command, fanout};
use crate::harness::*;

#[tokio::test]
async fn tail_prints_an_accepted_event() -> anyhow::Result<()> {
    let (stack, _partner, _auth) = super::stack_with_working_partner(&fanout(5)).await?;
    let mut tail = command(&stack)
        .args(["tail", "--json", "--type", "order.*"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();

    // The tail starts at "now": send until it shows one, so its start is known to be past.
    let mut n = 0;
    let first = loop {
        n += 1;
        let body = json!({"order": {"id": n}});
        let id = stack
            .accepted("order.created", &format!("t-{n}"), &body)
            .await?;
        let next = tokio::time::timeout(std::time::Duration::from_millis(500), lines.next_line());
        if let Ok(line) = next.await {
            break (id, line?.unwrap_or_default());
        }
        anyhow::ensure!(n < 120, "the tail printed nothing");
    };
    assert!(first.1.contains("evt_"), "{}", first.1);

    let sent_at = Instant::now();
    let id = stack
        .accepted(
            "order.created",
            "t-measured",
            &json!({"order": {"id": "m"}}),
        )
        .await?;
    let line = loop {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await??
            .unwrap_or_default();
        if line.contains(&id) {
            break line;
        }
    };
    println!(
        "tail latency: {:?} (accepted to printed)",
        sent_at.elapsed()
    );
    let shown: serde_json::Value = serde_json::from_str(&line)?;
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["source"], "shop");
    assert_eq!(shown["event_type"], "order.created");
    // Another type is filtered out by the tail's --type: it never shows up before the next one.
    stack
        .accepted("customer.created", "t-other", &json!({}))
        .await?;
    let last = stack
        .accepted("order.cancelled", "t-last", &json!({"order": {"id": "l"}}))
        .await?;
    let next = tokio::time::timeout(PATIENCE, lines.next_line())
        .await??
        .unwrap_or_default();
    assert!(next.contains(&last), "{next}");
    tail.kill().await?;
    stack.stop().await;
    Ok(())
}
