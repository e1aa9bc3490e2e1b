//! Bounded reads of a stream: an ephemeral ordered consumer from a start (the beginning, a
//! sequence, a time) over a filter subject, read one message at a time. The end is the last
//! message the consumer had pending when it was created, so a scan of a growing stream ends;
//! callers bound it further by count or time. Nothing is acknowledged or changed.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull::OrderedConfig},
};
use futures::StreamExt as _;

use super::Error;

/// How long one message may take to arrive before the scan fails (NATS away).
const NEXT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a scan starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start {
    /// The oldest message kept.
    All,
    /// This stream sequence (or the next one kept after it).
    Sequence(u64),
    /// The first message stored at or after this Unix time in milliseconds.
    Time(i64),
    /// The latest message of the filter only.
    Last,
}

/// An open scan.
pub(crate) struct Scan {
    messages: Option<jetstream::consumer::pull::Ordered>,
    /// Messages left before the end known at creation.
    left: u64,
}

/// Unix milliseconds of a NATS timestamp.
pub(crate) fn millis(at: async_nats::jetstream::message::Info<'_>) -> i64 {
    i64::try_from(at.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl Scan {
    /// Opens a scan of `stream` over `filters` (all subjects when empty).
    pub(crate) async fn open(
        js: &jetstream::Context,
        stream: &str,
        filters: Vec<String>,
        start: Start,
        headers_only: bool,
    ) -> Result<Self, Error> {
        let stream = js
            .get_stream(stream)
            .await
            .map_err(|e| Error::nats("read the stream")(e.into()))?;
        let deliver_policy = match start {
            Start::All => DeliverPolicy::All,
            Start::Sequence(start_sequence) => DeliverPolicy::ByStartSequence {
                start_sequence: start_sequence.max(1),
            },
            Start::Time(ms) => DeliverPolicy::ByStartTime {
                start_time: async_nats::datetime::from_nanos(i128::from(ms.max(0)) * 1_000_000)
                    .map_err(Error::nats("read the stream"))?,
            },
            Start::Last => DeliverPolicy::Last,
        };
        let (filter_subject, filter_subjects) = match <[String; 1]>::try_from(filters) {
            Ok([one]) => (one, Vec::new()),
            Err(many) => (String::new(), many),
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject,
                filter_subjects,
                deliver_policy,
                headers_only,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::nats("open a scan")(e.into()))?;
        let left = consumer.cached_info().num_pending;
        if left == 0 {
            return Ok(Self {
                messages: None,
                left,
            });
        }
        let messages = consumer
            .messages()
            .await
            .map_err(|e| Error::nats("open a scan")(e.into()))?;
        Ok(Self {
            messages: Some(messages),
            left,
        })
    }

    /// Messages the scan will read at most (known when it was opened).
    pub(crate) fn len(&self) -> u64 {
        self.left
    }

    /// The next message, `None` at the end.
    pub(crate) async fn next(&mut self) -> Result<Option<jetstream::Message>, Error> {
        let Some(messages) = self.messages.as_mut() else {
            return Ok(None);
        };
        if self.left == 0 {
            self.messages = None;
            return Ok(None);
        }
        let next = tokio::time::timeout(NEXT_TIMEOUT, messages.next())
            .await
            .map_err(|e| Error::nats("read the stream")(e.into()))?;
        let msg = match next {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => return Err(Error::nats("read the stream")(e.into())),
            None => {
                self.messages = None;
                return Ok(None);
            }
        };
        // `pending` counts what is left after this message; new messages raise it, but the
        // scan keeps to the end it started with.
        self.left -= 1;
        let pending = msg.info().map(|i| i.pending).unwrap_or(0);
        self.left = self.left.min(pending);
        Ok(Some(msg))
    }
}

/// The next page token after stream sequence `sequence`.
pub(crate) fn token_after(sequence: u64) -> String {
    (sequence + 1).to_string()
}

/// Where a page starts: its token, else `since_ms`, else the beginning.
pub(crate) fn page_start(token: &str, since_ms: i64) -> Result<Start, Error> {
    if !token.is_empty() {
        return token
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .map(Start::Sequence)
            .ok_or(Error::Invalid("unknown page token"));
    }
    Ok(if since_ms > 0 {
        Start::Time(since_ms)
    } else {
        Start::All
    })
}

/// Events per page: `asked`, 50 when 0, at most 1000.
pub(crate) fn page_size(asked: u32) -> usize {
    match asked {
        0 => 50,
        n => n.min(1000) as usize,
    }
}

/// Checks a `[since, until)` range.
pub(crate) fn check_range(since_ms: i64, until_ms: i64) -> Result<(), Error> {
    if since_ms < 0 || until_ms < 0 {
        return Err(Error::Invalid("times must be Unix milliseconds"));
    }
    if until_ms > 0 && until_ms <= since_ms {
        return Err(Error::Invalid("until must be after since"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_are_sequences_and_anything_else_is_refused() {
        assert!(matches!(page_start("42", 0), Ok(Start::Sequence(42))));
        assert!(matches!(page_start("", 5), Ok(Start::Time(5))));
        assert!(matches!(page_start("", 0), Ok(Start::All)));
        for bad in ["0", "-1", "x", "1e3", "18446744073709551616", "\u{0}"] {
            assert!(page_start(bad, 0).is_err(), "{bad:?}");
        }
        assert_eq!(token_after(41), "42");
    }

    #[test]
    fn page_sizes_are_bounded_and_ranges_checked() {
        assert_eq!(page_size(0), 50);
        assert_eq!(page_size(7), 7);
        assert_eq!(page_size(u32::MAX), 1000);
        assert!(check_range(10, 5).is_err());
        assert!(check_range(-1, 0).is_err());
        assert!(check_range(0, 0).is_ok());
        assert!(check_range(5, 10).is_ok());
    }
}
