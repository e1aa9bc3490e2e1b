//! A partner answering 500, then hanging: the poller backs off (log and metrics) and recovers.

use std::time::Duration;

use hookyard_core::config::PollBackoff;
use hookyard_testkit::{
    lister::{Lister, Paging},
    wait_for,
};

use super::stack::{PATIENCE, POLLS_OK, Stack, config};

const ERRORS_5XX: &str =
    r#"hookyard_ingress_poll_errors_total{source="erp-orders",kind="http_5xx"}"#;
const BACKOFF: &str = r#"hookyard_ingress_poll_backoff_seconds{source="erp-orders"}"#;
const LAST_SUCCESS: &str =
    r#"hookyard_ingress_poll_last_success_timestamp_seconds{source="erp-orders"}"#;

#[tokio::test]
async fn a_failing_or_hanging_partner_is_backed_off_visibly_and_polled_again_when_it_answers()
-> anyhow::Result<()> {
    let partner = Lister::start(Paging::Cursor).await;
    partner.put("o-1", 1, "created");
    partner.fail(Some(500));
    let text = config(&partner.uri(), "");
    let stack = Stack::start(&text, false).await?;
    let ingress = stack.ingress("flaky", &text).await?;

    wait_for(PATIENCE, "five failed polls", || async {
        ingress.metric(ERRORS_5XX).await >= 5.0
    })
    .await?;
    assert!(
        ingress.metric(BACKOFF).await > 0.0,
        "backoff in the metrics"
    );
    assert_eq!(ingress.metric(POLLS_OK).await, 0.0);
    // The waits between tries grow as the source's backoff says: 200ms, 400ms, 800ms, …
    let backoff = PollBackoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };
    let at: Vec<_> = partner.seen().iter().map(|s| s.at).collect();
    for (n, pair) in at.windows(2).enumerate().take(4) {
        let gap = pair[1] - pair[0];
        let delay = backoff.delay(n as u32 + 1);
        assert!(
            gap >= delay,
            "try {} came {gap:?} after the last, before {delay:?}",
            n + 2
        );
    }
    let log = ingress.log();
    assert!(log.contains("poll failed, backing off"), "{log}");
    assert!(log.contains("\"kind\":\"http_5xx\""), "{log}");
    assert!(log.contains("retry_in_ms"), "{log}");

    // Hanging past the connection's timeout (1s) is a failure of its own kind.
    partner.fail(None);
    partner.delay(Some(Duration::from_secs(5)));
    wait_for(PATIENCE, "a timed-out poll", || async {
        let log = ingress.log();
        log.contains("\"kind\":\"timeout\"") || log.contains("\"kind\":\"unavailable\"")
    })
    .await?;
    assert_eq!(stack.events().await?, 0);

    // The partner answers again: the next try succeeds and the backoff is over.
    partner.delay(None);
    wait_for(PATIENCE, "a successful poll", || async {
        ingress.metric(POLLS_OK).await >= 1.0
    })
    .await?;
    wait_for(PATIENCE, "the event", || async {
        stack.events().await.unwrap_or(0) == 1
    })
    .await?;
    assert_eq!(ingress.metric(BACKOFF).await, 0.0);
    assert!(ingress.metric(LAST_SUCCESS).await > 0.0);
    assert!(ingress.log().contains("poll done"));
    Ok(())
}

#[tokio::test]
async fn a_poll_slower_than_its_interval_never_overlaps_itself() -> anyhow::Result<()> {
    let partner = Lister::start(Paging::Cursor).await;
    partner.put("o-1", 1, "created");
    // Every answer takes 1.5 s, the interval is 1 s: the next poll waits for the previous one.
    let answer = Duration::from_millis(1500);
    partner.delay(Some(answer));
    let text = config(&partner.uri(), "").replace("timeout = \"1s\"", "timeout = \"10s\"");
    let stack = Stack::start(&text, false).await?;
    let ingress = stack.ingress("slow", &text).await?;
    wait_for(PATIENCE, "four successful polls", || async {
        ingress.metric(POLLS_OK).await >= 4.0
    })
    .await?;
    let at: Vec<_> = partner.seen().iter().map(|s| s.at).collect();
    for pair in at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= answer,
            "a poll started {gap:?} after the previous one, which took {answer:?}"
        );
    }
    assert_eq!(stack.events().await?, 1);
    Ok(())
}
