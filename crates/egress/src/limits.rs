//! How a connection treats its partner: a request rate (a token bucket through [`governor`]),
//! a limit of requests in flight (a semaphore), and a circuit breaker. Calls over the rate or
//! the concurrency limit wait; calls while the breaker is open fail fast.

use std::{
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use hookyard_core::config::Connection as Config;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

/// The limits and breaker of one connection.
pub(crate) struct Limits {
    rate: Option<governor::DefaultDirectRateLimiter>,
    slots: Option<Arc<Semaphore>>,
    pub breaker: Breaker,
}

impl Limits {
    pub(crate) fn new(config: &Config) -> Self {
        let rate = config.rate_limit.as_ref().and_then(|limit| {
            let quota = Quota::per_second(NonZeroU32::new(limit.per_second)?)
                .allow_burst(NonZeroU32::new(limit.burst())?);
            Some(RateLimiter::direct(quota))
        });
        let slots = config
            .max_concurrency
            .map(|n| Arc::new(Semaphore::new(n as usize)));
        Self {
            rate,
            slots,
            breaker: Breaker::new(config.breaker.failures, config.breaker.cool_down),
        }
    }

    /// Waits for the rate limit and a free slot; the slot is held until the permit drops.
    pub(crate) async fn wait_turn(&self) -> Option<OwnedSemaphorePermit> {
        if let Some(rate) = &self.rate {
            let clock = DefaultClock::default();
            while let Err(not_until) = rate.check() {
                tokio::time::sleep(not_until.wait_time_from(clock.now())).await;
            }
        }
        match &self.slots {
            // The semaphore is never closed.
            Some(slots) => slots.clone().acquire_owned().await.ok(),
            None => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out since `since`; another is let through if it never reports back.
    HalfOpen {
        since: Instant,
    },
}

/// A circuit breaker: opens after `threshold` consecutive failures, rejects calls for
/// `cool_down`, then lets one probe through; the probe's success closes it, its failure opens
/// it again.
pub(crate) struct Breaker {
    threshold: u32,
    cool_down: Duration,
    state: Mutex<State>,
}

impl Breaker {
    /// A breaker; `threshold` 0 never opens.
    pub(crate) fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold,
            cool_down,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock still holds a usable state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an attempt may be made now: `Err` with how long until the breaker lets a probe
    /// through when it is open.
    pub(crate) fn admit(&self) -> Result<(), Duration> {
        if self.threshold == 0 {
            return Ok(());
        }
        let mut state = self.state();
        let now = Instant::now();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } | State::HalfOpen { since: until } if now < until => {
                Err(until - now)
            }
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen {
                    since: now + self.cool_down,
                };
                Ok(())
            }
        }
    }

    /// Records the outcome of an admitted attempt; returns true when this opened the breaker.
    pub(crate) fn record(&self, success: bool) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let mut state = self.state();
        let open = State::Open {
            until: Instant::now() + self.cool_down,
        };
        match (*state, success) {
            (_, true) => {
                *state = State::Closed { failures: 0 };
                false
            }
            (State::Closed { failures }, false) if failures + 1 >= self.threshold => {
                *state = open;
                true
            }
            (State::Closed { failures }, false) => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            (State::HalfOpen { .. }, false) => {
                *state = open;
                true
            }
            (State::Open { .. }, false) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_probes_after_the_cool_down() {
        let breaker = Breaker::new(3, Duration::from_secs(10));
        assert!(breaker.admit().is_ok());
        breaker.record(false);
        breaker.record(false);
        breaker.record(true);
        breaker.record(false);
        breaker.record(false);
        assert!(
            breaker.admit().is_ok(),
            "a success in between resets the count"
        );
        assert!(breaker.record(false), "third consecutive failure opens");
        assert!(breaker.admit().is_err());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(breaker.admit().is_ok(), "one probe after the cool-down");
        assert!(breaker.admit().is_err(), "only one probe at a time");
        assert!(breaker.record(false), "a failed probe opens again");
        assert!(breaker.admit().is_err());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(breaker.admit().is_ok());
        breaker.record(true);
        assert!(
            breaker.admit().is_ok() && breaker.admit().is_ok(),
            "a good probe closes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_never_reports_does_not_block_forever() {
        let breaker = Breaker::new(1, Duration::from_secs(5));
        breaker.record(false);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(breaker.admit().is_ok());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(breaker.admit().is_ok());
    }

    #[test]
    fn threshold_zero_never_opens() {
        let breaker = Breaker::new(0, Duration::from_secs(5));
        for _ in 0..10 {
            assert!(!breaker.record(false));
        }
        assert!(breaker.admit().is_ok());
    }
}
