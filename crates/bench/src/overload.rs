//! Overload: ten times ingress's capacity offered for a while. It must shed with 503/429 and
//! `Retry-After` (not queue without bound), and accept again soon after.

use std::{net::SocketAddr, time::Duration};

use serde::Serialize;
use tokio::time::Instant;

use crate::{
    load::{self, Bodies},
    procs::{Mode, Proc},
    suite::{PATH, Plan},
};

/// Overload: 10× capacity offered, what came back, and how long until a request is accepted
/// again afterwards.
#[derive(Debug, Clone, Serialize)]
pub struct Overload {
    pub mode: Mode,
    pub offered_per_s: f64,
    pub seconds: f64,
    pub accepted: u64,
    pub shed: u64,
    pub shed_without_retry_after: u64,
    pub other: u64,
    pub errors: u64,
    pub p99_ms: f64,
    pub peak_rss_kib: u64,
    pub recovery_ms: f64,
}

/// Offers 10× `capacity` to the ingress at `addr` for the plan's overload time, then measures
/// how long until a request is accepted again.
pub async fn run(
    plan: &Plan,
    mode: Mode,
    addr: SocketAddr,
    ingress: &Proc,
    capacity: f64,
    body: usize,
) -> Overload {
    let offered = capacity * 10.0;
    let bodies = Bodies::new(body, &format!("{mode:?}-overload"));
    let duration = Duration::from_secs_f64(plan.overload_seconds);
    let mut outcome = load::open_loop(addr, PATH, &bodies, offered, duration, 2048).await;
    let ended = Instant::now();
    let probe = Bodies::new(body, &format!("{mode:?}-recovery"));
    let mut conn_outcome;
    loop {
        conn_outcome = load::closed_loop(addr, PATH, &probe, 1, Duration::from_millis(1)).await;
        if conn_outcome.ok > 0 || ended.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Overload {
        mode,
        offered_per_s: offered,
        seconds: outcome.seconds,
        accepted: outcome.ok,
        shed: outcome.shed,
        shed_without_retry_after: outcome.shed_without_retry_after,
        other: outcome.other,
        errors: outcome.errors,
        p99_ms: f64::from(outcome.percentile(99.0)) / 1000.0,
        peak_rss_kib: ingress.peak_rss_kib(),
        recovery_ms: ended.elapsed().as_secs_f64() * 1000.0,
    }
}
