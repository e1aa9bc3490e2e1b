//! kill -9 in the middle of a poll: some records stored, the cursor not; after a restart every
//! record reaches the handler once.

use std::time::Duration;

use hookyard_testkit::{
    lister::{Lister, Paging},
    wait_for,
};

use super::stack::{PATIENCE, Stack, config, counts, once_each};

#[tokio::test]
async fn a_poll_killed_after_its_first_page_is_read_again_and_the_handler_sees_no_duplicate()
-> anyhow::Result<()> {
    let partner = Lister::start(Paging::Cursor).await;
    let ids = ["o-1", "o-2", "o-3", "o-4", "o-5", "o-6"];
    for (n, id) in ids.iter().enumerate() {
        partner.put(id, n as i64 + 1, "created");
    }
    // The second page (offset 2) hangs: the first poll stops there with page 1 stored.
    partner.hold(Some((2, Duration::from_secs(600))));
    let text = config(&partner.uri(), "");
    let stack = Stack::start(&text, true).await?;
    let mut ingress = stack.ingress("first", &text).await?;
    wait_for(PATIENCE, "the first page's events to be stored", || async {
        stack.events().await.unwrap_or(0) >= 2
    })
    .await?;
    wait_for(PATIENCE, "the poll to ask for page 2", || async {
        partner.seen().iter().any(|s| s.offset == 2)
    })
    .await?;
    assert_eq!(
        stack.cursor().await?,
        None,
        "no cursor before the last page"
    );
    ingress.kill9().await?;
    assert_eq!(
        stack.events().await?,
        2,
        "page 1 stored whole, nothing more"
    );

    partner.hold(None);
    let _restarted = stack.ingress("second", &text).await?;
    wait_for(PATIENCE, "six records at the handler", || async {
        partner.sunk().await.len() >= 6
    })
    .await?;
    wait_for(PATIENCE, "the cursor to be stored", || async {
        matches!(stack.cursor().await, Ok(Some(state)) if state["cursor"] == 6)
    })
    .await?;
    wait_for(PATIENCE, "the pipeline to be idle", || stack.idle()).await?;
    // The restarted poll read page 1 again; the stream knew its events.
    assert_eq!(stack.events().await?, 6);
    assert_eq!(
        counts(partner.sunk().await),
        once_each(&["o-1/1", "o-2/2", "o-3/3", "o-4/4", "o-5/5", "o-6/6"])
    );
    let since_zero = partner
        .seen()
        .iter()
        .filter(|s| s.since == 0 && s.offset == 0)
        .count();
    assert!(
        since_zero >= 2,
        "the first page was read again from the old cursor"
    );
    Ok(())
}
