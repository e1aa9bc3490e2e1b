//! Warnings about a valid integration file: settings that work but probably not as meant.
//! `hookyard validate` prints them; they never stop a service.

use std::time::Duration;

use super::{Handler, Integration, Problem, Step};

/// Every warning about `integration`, each with the key it concerns.
pub fn warnings(integration: &Integration) -> Vec<Problem> {
    let mut out = Vec::new();
    for (name, handler) in &integration.handlers {
        let span = retry_span(handler);
        for (s, step) in handler.steps.iter().enumerate() {
            let Step::Http(http) = step else {
                continue;
            };
            let Some(connection) = integration.connections.get(&http.connection) else {
                continue;
            };
            let breaker = &connection.breaker;
            if breaker.failures > 0 && span < breaker.cool_down {
                out.push(Problem {
                    key: format!("handlers.{name}.backoff"),
                    message: format!(
                        "the retries of steps[{s}] span {} (max_deliver {} with this backoff), less than the cool-down {} of connection {}'s circuit breaker: a partner failing for longer dead-letters its events after its breaker closes again; calls the open breaker refuses wait and do not count, but a longer backoff or a higher max_deliver rides out a longer outage",
                        humantime::format_duration(span),
                        handler.max_deliver,
                        humantime::format_duration(breaker.cool_down),
                        http.connection,
                    ),
                    line: None,
                });
            }
        }
    }
    out
}

/// How long a handler keeps retrying a failing partner: the sum of the delays before its
/// `max_deliver - 1` redeliveries (the last backoff entry repeating).
pub fn retry_span(handler: &Handler) -> Duration {
    let retries = handler.max_deliver.saturating_sub(1) as usize;
    let last = handler.backoff.last().copied().unwrap_or_default();
    (0..retries)
        .map(|i| handler.backoff.get(i).copied().unwrap_or(last))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(handler: &str, breaker: &str) -> Integration {
        let text = format!(
            "[handlers.h]\n{handler}\nsteps = [{{ type = \"http\", connection = \"erp\", path = \"/x\" }}]\n\n[connections.erp]\nbase_url = \"https://erp.example\"\n{breaker}\n"
        );
        Integration::parse(&text, &|_| None).expect("valid")
    }

    #[test]
    fn the_retry_span_sums_the_backoff_with_its_last_entry_repeating() {
        let i = file("max_deliver = 5\nbackoff = [\"1s\", \"2s\"]", "");
        assert_eq!(
            retry_span(&i.handlers["h"]),
            Duration::from_secs(1 + 2 + 2 + 2)
        );
        let i = file("max_deliver = 1", "");
        assert_eq!(retry_span(&i.handlers["h"]), Duration::ZERO);
    }

    #[test]
    fn a_retry_span_shorter_than_the_breakers_cool_down_is_named() {
        let short = file("max_deliver = 3\nbackoff = [\"1s\", \"5s\"]", "");
        let found = warnings(&short);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "handlers.h.backoff");
        assert!(found[0].message.contains("span 6s") && found[0].message.contains("30s"));
        // The defaults (4 retries over 1s + 5s + 30s + 2m) outlast the default cool-down.
        assert!(warnings(&file("", "")).is_empty());
        // No breaker, nothing to outlast.
        let off = file("max_deliver = 2", "breaker = { failures = 0 }");
        assert!(warnings(&off).is_empty());
    }
}
