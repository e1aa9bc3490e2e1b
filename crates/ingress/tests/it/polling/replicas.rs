//! Two ingress replicas polling one source: one poller at a time, taken over after a kill -9.

use hookyard_testkit::{
    lister::{Lister, Paging},
    wait_for,
};
use tokio::time::Instant;

use super::stack::{LEASE_TTL, PATIENCE, POLLS_OK, Stack, config, counts, once_each};

#[tokio::test]
async fn two_replicas_poll_one_at_a_time_and_the_survivor_takes_over_a_killed_one()
-> anyhow::Result<()> {
    let partner = Lister::start(Paging::Cursor).await;
    for (n, id) in ["o-1", "o-2", "o-3"].iter().enumerate() {
        partner.put(id, n as i64 + 1, "created");
    }
    // The replicas differ only in a path prefix the partner records, so it can tell them apart.
    let stack = Stack::start(&config(&partner.uri(), ""), true).await?;
    let one = stack
        .ingress("one", &config(&partner.uri(), "/one"))
        .await?;
    let two = stack
        .ingress("two", &config(&partner.uri(), "/two"))
        .await?;
    wait_for(PATIENCE, "three records at the handler", || async {
        partner.sunk().await.len() >= 3
    })
    .await?;
    // Both run for several more polls: only one of them ever calls the partner.
    let before = one.metric(POLLS_OK).await + two.metric(POLLS_OK).await;
    wait_for(PATIENCE, "three more polls", || async {
        one.metric(POLLS_OK).await + two.metric(POLLS_OK).await >= before + 3.0
    })
    .await?;
    let seen = partner.seen();
    let leader = seen[0].prefix.clone();
    assert!(
        seen.iter().all(|s| s.prefix == leader),
        "one poller at a time: {:?}",
        seen.iter().map(|s| &s.prefix).collect::<Vec<_>>()
    );
    let (mut leader, survivor, other) = if leader == "/one" {
        (one, two, "/two")
    } else {
        (two, one, "/one")
    };

    leader.kill9().await?;
    let killed = Instant::now();
    let calls = partner.seen().len();
    partner.put("o-4", 4, "created");
    partner.put("o-5", 5, "created");
    // The lease runs out, the survivor takes it and polls within its interval (1s).
    // The slack covers a loaded machine: expiry of the key, the survivor's look every quarter
    // TTL, scheduling.
    let bound = LEASE_TTL + std::time::Duration::from_secs(1);
    let slack = std::time::Duration::from_secs(5);
    wait_for(
        bound + slack,
        "the survivor to poll within lease TTL + interval",
        || async { partner.seen().iter().skip(calls).any(|s| s.prefix == other) },
    )
    .await?;
    let took = killed.elapsed();
    println!("survivor polled {took:?} after the kill (lease TTL + interval = {bound:?})");
    wait_for(PATIENCE, "five records at the handler", || async {
        partner.sunk().await.len() >= 5
    })
    .await?;
    let after = survivor.metric(POLLS_OK).await;
    wait_for(PATIENCE, "two more polls of the survivor", || async {
        survivor.metric(POLLS_OK).await >= after + 2.0
    })
    .await?;
    wait_for(PATIENCE, "the pipeline to be idle", || stack.idle()).await?;
    assert_eq!(
        counts(partner.sunk().await),
        once_each(&["o-1/1", "o-2/2", "o-3/3", "o-4/4", "o-5/5"]),
        "nothing lost, nothing twice"
    );
    assert!(
        partner.seen().iter().skip(calls).all(|s| s.prefix == other),
        "after the kill only the survivor polls"
    );
    assert_eq!(stack.events().await?, 5);
    Ok(())
}
