//! Reloading the integration file while the router runs: a route added to the file applies to
//! the events routed after the reload, and an invalid file changes nothing.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tracing_subscriber::{Layer as _, layer::SubscriberExt as _};

use super::*;

const RELOAD_INTERVAL: Duration = Duration::from_millis(100);

/// [`CONFIG`] plus a `refunds` handler taking `refund.created`.
fn with_refunds() -> String {
    format!(
        r#"{CONFIG}
[[routes]]
event = "refund.created"
handlers = ["refunds"]

[handlers.refunds]
steps = [{{ type = "http", connection = "erp", path = "/refunds" }}]
"#
    )
}

/// [`with_refunds`] plus a `credits` handler taking `refund.updated`.
fn with_refunds_and_credits() -> String {
    format!(
        r#"{}
[[routes]]
event = "refund.updated"
handlers = ["credits"]

[handlers.credits]
steps = [{{ type = "http", connection = "erp", path = "/credits" }}]
"#,
        with_refunds()
    )
}

/// The integration file in a fresh directory, and the reload settings that watch it.
fn config_file(text: &str) -> anyhow::Result<(tempfile::TempDir, hookyard_router::Reload)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("integration.toml");
    std::fs::write(&path, text)?;
    let reload = hookyard_router::Reload {
        path,
        interval: RELOAD_INTERVAL,
    };
    Ok((dir, reload))
}

/// Replaces the file as editors, `kubectl` and compose config updates do: a new file in the
/// same directory renamed over the old one.
fn replace_by_rename(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().context("config file has a directory")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.persist(path)?;
    Ok(())
}

/// Publishes events of `topic` (ids `<prefix><n>`) until one is routed to `handler`, which
/// happens once the router reloaded the file. Returns how many were published.
async fn publish_until_routed(
    router: &Router,
    topic: &str,
    handler: &str,
    prefix: &str,
) -> anyhow::Result<u64> {
    let subject = router.topology.work_subject(handler);
    let work = router.js.get_stream(router.topology.work_stream()).await?;
    let mut published = 0u64;
    wait_for(LIMIT, "an event routed with the reloaded table", || {
        published += 1;
        let event = event(&format!("{prefix}{published}"), Some(topic));
        let (work, subject) = (&work, subject.clone());
        async move {
            router.publish_event(&event).await.is_ok()
                && work.get_last_raw_message_by_subject(&subject).await.is_ok()
        }
    })
    .await?;
    Ok(published)
}

/// Publishes `n` events of `topic` (ids `<prefix><k>`) and returns their ids.
async fn publish_batch(
    router: &Router,
    topic: &str,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    for k in 0..n {
        let id = format!("{prefix}{k}");
        router.publish_event(&event(&id, Some(topic))).await?;
        ids.push(id);
    }
    Ok(ids)
}

/// Asserts every event in `ids` has exactly the work items of `handlers` and no dead letter.
async fn assert_routed_to(
    router: &Router,
    ids: &[String],
    handlers: &[&str],
) -> anyhow::Result<()> {
    let work = stored(&router.js, &router.topology.work_stream()).await?;
    let dead = stored(&router.js, &router.topology.dlq_stream()).await?;
    for id in ids {
        let mut got: Vec<String> = work
            .iter()
            .filter(|m| msg_id(m).is_some_and(|m| m.starts_with(&format!("{id}:"))))
            .map(|m| m.subject.to_string())
            .collect();
        got.sort_unstable();
        let mut want: Vec<String> = handlers
            .iter()
            .map(|h| router.topology.work_subject(h))
            .collect();
        want.sort_unstable();
        assert_eq!(got, want, "work items of {id}");
        let unrouted = format!("{id}:unrouted");
        assert!(
            !dead.iter().any(|m| msg_id(m) == Some(unrouted.as_str())),
            "{id} must not be dead-lettered"
        );
    }
    Ok(())
}

/// Asserts every event in `ids` was dead-lettered as unrouted and has no work item.
async fn assert_unrouted(router: &Router, ids: &[String]) -> anyhow::Result<()> {
    let work = stored(&router.js, &router.topology.work_stream()).await?;
    let dead = stored(&router.js, &router.topology.dlq_stream()).await?;
    for id in ids {
        let unrouted = format!("{id}:unrouted");
        let letter = dead
            .iter()
            .find(|m| msg_id(m) == Some(unrouted.as_str()))
            .with_context(|| format!("no dead letter for {id}"))?;
        assert_eq!(letter.subject.as_str(), router.topology.unrouted_subject());
        assert_eq!(
            DeadLetter::decode(letter.payload.as_ref())?.reason,
            "unrouted"
        );
        assert!(
            !work
                .iter()
                .any(|m| msg_id(m).is_some_and(|m| m.starts_with(&format!("{id}:")))),
            "{id} must have no work item"
        );
    }
    Ok(())
}

#[tokio::test]
async fn route_added_to_the_file_applies_after_rename_and_after_in_place_overwrite()
-> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let (_dir, reload) = config_file(CONFIG)?;
    let path = reload.path.clone();
    let router = Router::start_with(&nats, Some(reload)).await?;

    // no route yet: dead-lettered, not lost
    let before = publish_batch(&router, "refund.created", "evt_before", 1).await?;
    let mut total = 1;
    router.wait_all_acked(total).await?;
    assert_unrouted(&router, &before).await?;

    replace_by_rename(&path, &with_refunds())?;
    total += publish_until_routed(&router, "refund.created", "refunds", "evt_r").await?;
    let after = publish_batch(&router, "refund.created", "evt_r_after", 5).await?;
    total += 5;
    router.wait_all_acked(total).await?;
    assert_routed_to(&router, &after, &["refunds"]).await?;
    // routes that were there keep working
    let orders = publish_batch(&router, "order.created", "evt_o", 2).await?;
    total += 2;
    router.wait_all_acked(total).await?;
    assert_routed_to(&router, &orders, &["orders", "audit"]).await?;

    std::fs::write(&path, with_refunds_and_credits())?;
    total += publish_until_routed(&router, "refund.updated", "credits", "evt_u").await?;
    let after = publish_batch(&router, "refund.updated", "evt_u_after", 5).await?;
    total += 5;
    router.wait_all_acked(total).await?;
    assert_routed_to(&router, &after, &["credits"]).await?;

    // what was dead-lettered before the reload stays there, once
    assert_unrouted(&router, &before).await?;
    router.stop().await
}

/// Paths named by the router's warnings about an integration file (rejected reloads).
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    fn about(&self, path: &Path) -> bool {
        let shown = path.display().to_string();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&shown)
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        // The router's own lines and those of the file watcher it runs.
        let ours = ["hookyard_router", "hookyard_core::reload"];
        if *meta.level() != tracing::Level::WARN
            || !ours.iter().any(|t| meta.target().starts_with(t))
        {
            return;
        }
        let mut path = PathField(None);
        event.record(&mut path);
        if let Some(path) = path.0 {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(path);
        }
    }
}

struct PathField(Option<String>);

impl tracing::field::Visit for PathField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "path" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// The rejection is only observable in the logs, so the test listens to them to know the router
/// has read the invalid file before checking that routing did not change. `#[tokio::test]` runs
/// the router on this thread, where the subscriber is installed.
#[tokio::test]
async fn invalid_rewrite_keeps_the_current_routes_until_the_next_valid_change() -> anyhow::Result<()>
{
    let warnings = Warnings::default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _logs = tracing::subscriber::set_default(
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_test_writer()
                    .with_filter(filter),
            )
            .with(warnings.clone()),
    );
    let nats = Nats::start().await?;
    let (_dir, reload) = config_file(CONFIG)?;
    let path: PathBuf = reload.path.clone();
    let router = Router::start_with(&nats, Some(reload)).await?;
    let first = publish_batch(&router, "order.created", "evt_i", 1).await?;
    let mut total = 1;
    router.wait_all_acked(total).await?;
    assert_routed_to(&router, &first, &["orders", "audit"]).await?;

    // would send refunds somewhere and orders to a handler that does not exist
    let invalid = format!(
        "{}\n[[routes]]\nevent = \"order.*\"\nhandlers = [\"ghost\"]\n",
        with_refunds()
    );
    replace_by_rename(&path, &invalid)?;
    wait_for(LIMIT, "the router to reject the invalid file", || async {
        warnings.about(&path)
    })
    .await?;
    let orders = publish_batch(&router, "order.created", "evt_kept", 3).await?;
    let refunds = publish_batch(&router, "refund.created", "evt_noroute", 2).await?;
    total += 5;
    router.wait_all_acked(total).await?;
    assert_routed_to(&router, &orders, &["orders", "audit"]).await?;
    assert_unrouted(&router, &refunds).await?;

    // fixed: tried again on the next change
    std::fs::write(&path, with_refunds())?;
    total += publish_until_routed(&router, "refund.created", "refunds", "evt_fixed").await?;
    router.wait_all_acked(total).await?;
    router.stop().await
}
