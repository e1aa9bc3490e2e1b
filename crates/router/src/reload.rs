//! Reloading the integration file while the router runs: the file is read every interval and,
//! when its content changed and it is valid, replaces the route table for the events routed
//! from then on. An invalid file is reported and the current table kept until the next change.

use std::{
    hash::{DefaultHasher, Hash as _, Hasher as _},
    path::Path,
    sync::Arc,
    time::Duration,
};

use hookyard_core::{
    Integration,
    config::{LoadError, SecretScope},
};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{Reload, report, table::Table};

/// How long a changed file must stay the same before it is loaded, at most: a file overwritten
/// in place is briefly empty or half written, and either may well be a valid integration file.
const SETTLE: Duration = Duration::from_millis(250);

/// Watches `reload.path` until `stop` is cancelled, replacing `table` on every valid change.
///
/// The first read happens at once and loads the file like any change: the table the router was
/// started with may have been read before an edit that this watcher would otherwise never see.
pub(crate) async fn watch(reload: Reload, table: Arc<Table>, stop: CancellationToken) {
    let Reload { path, interval } = reload;
    if interval.is_zero() {
        return;
    }
    let settle = interval.min(SETTLE);
    let path_shown = path.display().to_string();
    info!(
        path = %path_shown,
        interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        "watching the integration file for changes"
    );
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Digest of the content last loaded or rejected; `None` before the first read.
    let mut seen: Option<u64> = None;
    let mut unreadable = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let text = match read(&path, &mut unreadable).await {
            Some(text) => text,
            None => continue,
        };
        let digest = digest(&text);
        if seen == Some(digest) {
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(settle) => {}
        }
        // Still being written: look again on the next tick.
        if read(&path, &mut unreadable).await.as_deref() != Some(text.as_str()) {
            continue;
        }
        let first = seen.replace(digest).is_none();
        match load(&text) {
            Ok(integration) => {
                let (routes, handlers) = (integration.routes.len(), integration.handlers.len());
                if first {
                    debug!(routes, handlers, "routes loaded by the watcher");
                } else {
                    info!(routes, handlers, "routes reloaded");
                }
                table.replace(Arc::new(integration));
            }
            Err(error) => {
                let problems = error.problems();
                warn!(
                    path = %path_shown,
                    problems = problems.len(),
                    "integration file is invalid, keeping the current routes"
                );
                for problem in problems {
                    warn!(
                        key = %problem.key,
                        line = problem.line,
                        problem = %problem.message,
                        "integration file problem"
                    );
                }
            }
        }
    }
}

/// Reads the file, logging a failure once until it is readable again.
async fn read(path: &Path, unreadable: &mut bool) -> Option<String> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => {
            if std::mem::take(unreadable) {
                info!(path = %path.display(), "integration file is readable again");
            }
            Some(text)
        }
        Err(source) => {
            if !std::mem::replace(unreadable, true) {
                let error = LoadError::Read {
                    path: path.display().to_string(),
                    source,
                };
                warn!(error = %report(&error), "cannot read the integration file, keeping the current routes");
            }
            None
        }
    }
}

/// Parses the text read, as [`Integration::load_scoped`] with [`SecretScope::None`] does, so the
/// table loaded is exactly the content whose digest is remembered.
fn load(text: &str) -> Result<Integration, LoadError> {
    Integration::parse_scoped(text, &|name| std::env::var(name).ok(), SecretScope::None)
}

fn digest(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_content_only() {
        assert_eq!(digest("a = 1\n"), digest("a = 1\n"));
        assert_ne!(digest("a = 1\n"), digest("a = 2\n"));
    }

    #[test]
    fn load_reports_every_problem_of_an_invalid_file() {
        let text = r#"
[[routes]]
event = "a"
handlers = ["ghost"]

[[routes]]
event = "b"
handlers = ["phantom"]
"#;
        let error = load(text).expect_err("routes to missing handlers");
        assert_eq!(error.problems().len(), 2);
    }
}
