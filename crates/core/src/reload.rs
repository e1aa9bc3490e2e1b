//! Reloading the integration file while a service runs: the file is read every interval and,
//! when its content changed and it is valid, handed to the service, which puts it in place for
//! the work it starts from then on. An invalid file — or one the service cannot use — is
//! reported and the current one kept until the next change.
//!
//! The content is compared, not the modification time, which a bind-mounted or `ConfigMap` file
//! may keep; a new content is loaded once it has stayed the same for a moment, so a file
//! overwritten in place is never loaded half written.

use std::{
    hash::{DefaultHasher, Hash as _, Hasher as _},
    path::Path,
    sync::Arc,
    time::Duration,
};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    Integration,
    config::{LoadError, SecretScope},
    telemetry::report,
};

/// Where and how often to reload the integration file.
#[derive(Debug, Clone)]
pub struct Reload {
    /// The integration file to watch, normally the one the service was started with.
    pub path: std::path::PathBuf,
    /// How often the file is read and compared with the last content seen; zero never reloads.
    pub interval: Duration,
}

impl Reload {
    /// The interval services use unless told otherwise.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
}

/// How long a changed file must stay the same before it is loaded, at most: a file overwritten
/// in place is briefly empty or half written, and either may well be a valid integration file.
const SETTLE: Duration = Duration::from_millis(250);

/// Watches `reload.path` until `stop` is cancelled, handing every valid change (its secrets
/// resolved for `scope`) to `apply`; `apply` says why when the service cannot use it, and the
/// current file stays in place.
///
/// The first read happens at once and loads the file like any change: the file the service was
/// started with may have been read before an edit that this watcher would otherwise never see.
pub async fn watch(
    reload: Reload,
    scope: SecretScope,
    stop: CancellationToken,
    mut apply: impl FnMut(Arc<Integration>) -> Result<(), String>,
) {
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
        let Some((text, digest)) = read_changed(&path, seen, &mut unreadable).await else {
            continue;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(settle) => {}
        }
        // Still being written: look again on the next tick.
        if read(&path, &mut unreadable).await.as_deref() != Some(text.as_str()) {
            continue;
        }
        let first = seen.replace(digest).is_none();
        match load(&text, scope) {
            Ok(integration) => hand_over(&mut apply, integration, first, &path_shown),
            Err(error) => report_invalid(&error, &path_shown),
        }
    }
}

/// Reads the file and returns its content with its digest when the digest differs from
/// `seen`, so an unchanged file costs one read and no parse.
async fn read_changed(
    path: &Path,
    seen: Option<u64>,
    unreadable: &mut bool,
) -> Option<(String, u64)> {
    let text = read(path, unreadable).await?;
    let digest = digest(&text);
    (seen != Some(digest)).then_some((text, digest))
}

/// Hands a valid file to the service and logs the outcome. The watcher's first load is only
/// a debug line, as it normally repeats the file the service started with.
fn hand_over(
    apply: &mut impl FnMut(Arc<Integration>) -> Result<(), String>,
    integration: Integration,
    first: bool,
    path_shown: &str,
) {
    let (routes, handlers, connections) = (
        integration.routes.len(),
        integration.handlers.len(),
        integration.connections.len(),
    );
    match apply(Arc::new(integration)) {
        Ok(()) if first => {
            debug!(
                routes,
                handlers, connections, "integration file loaded by the watcher"
            );
        }
        // The router's line for its table; other services log the same change.
        Ok(()) => info!(routes, handlers, connections, "routes reloaded"),
        Err(reason) => warn!(
            path = %path_shown,
            %reason,
            "integration file cannot be used, keeping the current one"
        ),
    }
}

/// Logs why a changed file was not loaded, one line per problem, so an operator can fix it
/// from the logs alone.
fn report_invalid(error: &LoadError, path_shown: &str) {
    let problems = error.problems();
    warn!(
        path = %path_shown,
        problems = problems.len(),
        "integration file is invalid, keeping the current one"
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
                warn!(error = %report(&error), "cannot read the integration file, keeping the current one");
            }
            None
        }
    }
}

/// Parses the text read, as [`Integration::load_scoped`] does, so the file loaded is exactly
/// the content whose digest is remembered.
fn load(text: &str, scope: SecretScope) -> Result<Integration, LoadError> {
    Integration::parse_scoped(text, &|name| std::env::var(name).ok(), scope)
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
        let error = load(text, SecretScope::None).expect_err("routes to missing handlers");
        assert_eq!(error.problems().len(), 2);
    }
}
