//! Records read again long after the stream's duplicate window are still stored once.

use std::{sync::Arc, time::Duration};

use hookyard_core::Integration;
use hookyard_testkit::{
    lister::{Lister, Paging},
    wait_for,
};
use tokio_util::sync::CancellationToken;

use super::stack::{PATIENCE, POLLS_OK, Stack, config};

const DUPLICATES: &str =
    r#"hookyard_ingress_poll_records_total{source="erp-orders",outcome="duplicate"}"#;

#[tokio::test]
async fn records_read_again_after_the_duplicate_window_are_not_stored_twice() -> anyhow::Result<()>
{
    let partner = Lister::start(Paging::Cursor).await;
    for (n, id) in ["o-1", "o-2", "o-3"].iter().enumerate() {
        partner.put(id, n as i64 + 1, "created");
    }
    // No cursor: every poll reads every record again.
    let text = config(&partner.uri(), "").replace("cursor = { record = \".updated_at\" }\n", "");
    let stack = Stack::start(&text, false).await?;
    let integration = Arc::new(Integration::parse(&text, &|_| None)?);
    let mut topology = stack.topology.clone();
    // The stream's own window is one second, so only the per-event subjects can absorb repeats.
    topology.limits.duplicate_window = Duration::from_secs(1);
    let mut settings =
        hookyard_ingress::Settings::new(integration, stack.client.clone(), topology.clone());
    settings.poll.egress_endpoint = Some(stack.egress.clone());
    settings.poll.lease_ttl = Duration::from_secs(2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let ingress = tokio::spawn(hookyard_ingress::run(settings, listener, shutdown.clone()));

    let metric = |series: &'static str| {
        let url = url.clone();
        async move {
            let text = match reqwest::get(format!("{url}/metrics")).await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            text.lines()
                .find_map(|l| l.strip_prefix(series))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        }
    };
    // Polls are a second apart: by the fourth, the first poll's events are out of the window.
    wait_for(PATIENCE, "four successful polls", || async {
        metric(POLLS_OK).await >= 4.0
    })
    .await?;
    let js = async_nats::jetstream::new(stack.client.clone());
    let mut stream = js.get_stream(topology.in_stream()).await?;
    let info = stream.info().await?;
    assert_eq!(info.config.duplicate_window, Duration::from_secs(1));
    assert_eq!(info.state.messages, 3, "each record stored once");
    assert!(
        metric(DUPLICATES).await >= 9.0,
        "three polls read all three again"
    );
    // Each event under its own subject below the source's.
    let message = stream
        .get_last_raw_message_by_subject(&topology.in_source_subjects("erp-orders")[1])
        .await?;
    assert_eq!(
        topology.source_of_in_subject(message.subject.as_str()),
        Some("erp-orders")
    );
    shutdown.cancel();
    ingress.await??;
    Ok(())
}
