//! Deliveries that made no attempt — handed back unstarted at a shutdown, or waiting because no
//! partner call was possible (an open breaker, egress unreachable, consent missing) — counted
//! per work message in the `HOOKYARD_RETURNS` bucket, so they do not spend the handler's
//! `max_deliver`.
//!
//! JetStream counts every delivery, including the ones a stopping worker received after it
//! stopped pulling and returns without an attempt. Without this count a message that happened
//! to arrive during a few rolling restarts would reach its last allowed delivery having never
//! been tried, and be dead-lettered without a partner call; and a three-second partner outage
//! behind an open breaker would dead-letter whatever arrived meanwhile. The entry is written only
//! for such deliveries and read only on a redelivery, so a normal delivery costs nothing; it is
//! removed when the message's delivery ends.

use async_nats::jetstream::{self, kv};
use hookyard_core::pull::nak;
use tracing::warn;

use crate::{dispatch::HandlerContext, report};

fn key(ctx: &HandlerContext, msg: &jetstream::Message) -> Option<String> {
    let sequence = msg.info().ok()?.stream_sequence;
    Some(ctx.topology.returns_key(&ctx.name, sequence))
}

async fn read(store: &kv::Store, key: &str) -> Result<u32, kv::EntryError> {
    Ok(store
        .get(key)
        .await?
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
        .unwrap_or(0))
}

/// Counts one more delivery of `msg` that made no attempt, then returns it to the stream, to be
/// redelivered after `delay` (at once with `None`). A failed count is logged: the delivery then
/// counts against the handler.
pub(crate) async fn hand_back(
    ctx: &HandlerContext,
    msg: &jetstream::Message,
    delay: Option<std::time::Duration>,
) {
    if let Some(key) = key(ctx, msg) {
        let counted = async {
            let returned = read(&ctx.returns, &key).await.map_err(|e| report(&e))?;
            let value = (returned + 1).to_string();
            ctx.returns
                .put(&key, value.into_bytes().into())
                .await
                .map_err(|e| report(&e))
        };
        if let Err(error) = counted.await {
            warn!(handler = %ctx.name, %error, "failed to count a returned delivery; it will count as an attempt");
        }
    }
    nak(msg, delay).await;
}

/// Deliveries of `msg` that were handed back unstarted (0 on its first delivery, with nothing
/// to read). A failed read counts them as attempts: the cautious side of the retry budget.
pub(crate) async fn returned(
    ctx: &HandlerContext,
    msg: &jetstream::Message,
    delivered: u32,
) -> u32 {
    if delivered <= 1 {
        return 0;
    }
    let Some(key) = key(ctx, msg) else {
        return 0;
    };
    match read(&ctx.returns, &key).await {
        Ok(n) => n.min(delivered - 1),
        Err(e) => {
            warn!(error = %report(&e), "failed to read returned deliveries");
            0
        }
    }
}

/// Removes the count of `msg` once its delivery has ended (best effort: the bucket's age limit
/// removes what a failure leaves).
pub(crate) async fn forget(ctx: &HandlerContext, msg: &jetstream::Message) {
    if let Some(key) = key(ctx, msg)
        && let Err(e) = ctx.returns.purge(&key).await
    {
        warn!(error = %report(&e), "failed to remove a returned-delivery count");
    }
}
