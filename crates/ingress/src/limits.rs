//! How much and what a source accepts: its request rate (a token bucket per source, through
//! [`governor`]'s GCRA), the media types of its bodies, and how long a body may take to arrive.
//!
//! The rate is checked before authentication, so a flood of unauthenticated requests is
//! answered 429 without hashing anything; the price is that such a flood also spends the
//! partner's budget, which an `allow_ips` list (checked first) prevents.

use std::{num::NonZeroU32, time::Duration};

use bytes::Bytes;
use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed},
};
use hookyard_core::config::{RateLimit, Source};
use http::{HeaderMap, header::CONTENT_TYPE};

use crate::{Error, body};

/// A source's token bucket.
pub(crate) struct Rate<C: Clock = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl<C: Clock> std::fmt::Debug for Rate<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rate(..)")
    }
}

impl<C: Clock + Clone> Rate<C> {
    /// `None` for a limit of zero (refused at start by [`crate::access::check`]).
    fn with_clock(limit: RateLimit, clock: C) -> Option<Self> {
        let quota = Quota::per_second(NonZeroU32::new(limit.per_second)?)
            .allow_burst(NonZeroU32::new(limit.burst())?);
        Some(Self {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
        })
    }

    /// Takes a token, or tells how many whole seconds (at least 1) until one is available.
    fn take(&self) -> Result<(), u64> {
        self.limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }
}

/// A source's limits, prepared once at start.
#[derive(Debug)]
pub(crate) struct Limits {
    rate: Option<Rate>,
    /// Lower-case media types; empty: any.
    content_types: Vec<String>,
    pub read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rate: None,
            content_types: Vec::new(),
            read_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    pub(crate) fn new(source: &Source) -> Self {
        Self {
            rate: source
                .rate_limit
                .and_then(|limit| Rate::with_clock(limit, DefaultClock::default())),
            content_types: source
                .content_types
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect(),
            read_timeout: source.read_timeout,
        }
    }

    /// Spends one request of the source's rate, or refuses it with 429.
    pub(crate) fn check_rate(&self) -> Result<(), Error> {
        match &self.rate {
            Some(rate) => rate
                .take()
                .map_err(|retry_after_secs| Error::RateLimited { retry_after_secs }),
            None => Ok(()),
        }
    }

    /// Refuses with 415 a request whose `Content-Type` media type is not listed (parameters
    /// and case ignored); a missing or repeated header is not listed either.
    pub(crate) fn check_content_type(&self, headers: &HeaderMap) -> Result<(), Error> {
        if self.content_types.is_empty() {
            return Ok(());
        }
        let mut values = headers.get_all(CONTENT_TYPE).iter();
        let media_type = match (values.next(), values.next()) {
            (Some(value), None) => value.as_bytes().split(|b| *b == b';').next(),
            _ => None,
        }
        .map(|t| t.trim_ascii());
        match media_type {
            Some(t)
                if self
                    .content_types
                    .iter()
                    .any(|c| t.eq_ignore_ascii_case(c.as_bytes())) =>
            {
                Ok(())
            }
            _ => Err(Error::UnsupportedMediaType),
        }
    }

    /// Reads the body within `limit` bytes and the read timeout.
    pub(crate) async fn read_body(
        &self,
        body: axum::body::Body,
        limit: u64,
    ) -> Result<Bytes, Error> {
        tokio::time::timeout(self.read_timeout, body::read(body, limit))
            .await
            .map_err(|_| Error::BodyTimeout {
                timeout: self.read_timeout,
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use http::HeaderValue;

    #[test]
    fn the_bucket_refuses_past_the_burst_and_refills_at_the_rate() {
        let clock = FakeRelativeClock::default();
        let limit = RateLimit {
            per_second: 2,
            burst: Some(3),
        };
        let rate = Rate::with_clock(limit, clock.clone()).expect("non-zero");
        for _ in 0..3 {
            assert_eq!(rate.take(), Ok(()));
        }
        // The next token comes in 500 ms, announced as a whole second.
        assert_eq!(rate.take(), Err(1));
        clock.advance(Duration::from_millis(500));
        assert_eq!(rate.take(), Ok(()));
        assert_eq!(rate.take(), Err(1));

        let slow = Rate::with_clock(
            RateLimit {
                per_second: 1,
                burst: None,
            },
            clock,
        )
        .expect("non-zero");
        assert_eq!(slow.take(), Ok(()));
        assert_eq!(slow.take(), Err(1));
    }

    #[test]
    fn zero_rates_make_no_bucket() {
        let clock = FakeRelativeClock::default();
        let zero =
            |per_second, burst| Rate::with_clock(RateLimit { per_second, burst }, clock.clone());
        assert!(zero(0, None).is_none());
        assert!(zero(1, Some(0)).is_none());
    }

    fn limits(types: &[&str]) -> Limits {
        Limits {
            content_types: types.iter().map(|t| t.to_ascii_lowercase()).collect(),
            ..Limits::default()
        }
    }

    fn with_type(values: &[&'static [u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                CONTENT_TYPE,
                HeaderValue::from_bytes(v).expect("header value"),
            );
        }
        h
    }

    #[test]
    fn media_types_are_compared_without_parameters_or_case() {
        let l = limits(&["application/json", "Text/Plain"]);
        for ok in [
            b"application/json".as_slice(),
            b"Application/JSON; charset=utf-8",
            b" text/plain ;x=1",
        ] {
            assert!(l.check_content_type(&with_type(&[ok])).is_ok(), "{ok:?}");
        }
        for bad in [
            b"application/xml".as_slice(),
            b"application/jsonx",
            b"",
            b";application/json",
            b"\xff",
        ] {
            assert!(
                matches!(
                    l.check_content_type(&with_type(&[bad])),
                    Err(Error::UnsupportedMediaType)
                ),
                "{bad:?}"
            );
        }
        assert!(l.check_content_type(&HeaderMap::new()).is_err());
        assert!(
            l.check_content_type(&with_type(&[b"application/json", b"application/json"]))
                .is_err()
        );
        assert!(limits(&[]).check_content_type(&HeaderMap::new()).is_ok());
    }

    #[tokio::test]
    async fn a_body_slower_than_the_read_timeout_is_refused() {
        let l = Limits {
            read_timeout: Duration::from_millis(50),
            ..Limits::default()
        };
        let (mut tx, body) = {
            let (tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
            (tx, axum::body::Body::from_stream(rx))
        };
        tx.try_send(Ok(Bytes::from_static(b"{")))
            .expect("room for one chunk");
        let read = l.read_body(body, 1024).await;
        assert!(matches!(read, Err(Error::BodyTimeout { .. })));
        drop(tx);
        let ok = l.read_body(axum::body::Body::from("{}"), 1024).await;
        assert_eq!(ok.ok().as_deref(), Some(b"{}".as_slice()));
    }
}
