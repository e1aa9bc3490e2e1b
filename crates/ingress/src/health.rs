//! Liveness and readiness: `GET /healthz`, `GET /readyz` and `grpc.health.v1` on the same
//! listener, and the background task that creates `HOOKYARD_IN` and the `HOOKYARD_DEDUP`
//! bucket and keeps readiness current.
//!
//! Ready means the NATS client is connected, both the in stream and the dedup bucket exist,
//! and the store is not known to be full ([`Capacity`]: a publish refused for lack of space
//! makes ingress not ready at once; this task probes for freed space and makes it ready again).
//! Start-up never waits for any of it: a task tries `Topology::ensure_in` and
//! `Topology::ensure_dedup` with backoff until they succeed (and again if either later
//! disappears), hands the bucket to [`Dedup`], and flips the gRPC status between SERVING and NOT_SERVING as
//! readiness changes. `/readyz` checks live, with a short timeout.

use std::{convert::Infallible, sync::Arc, time::Duration};

use async_nats::{connection::State, jetstream};
use axum::{Json, Router, response::IntoResponse};
use hookyard_core::streams::Topology;
use http::StatusCode;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::server::HealthReporter;
use tower::ServiceExt;

use crate::{capacity::Capacity, dedup::Dedup};

/// Liveness path: 200 while the process runs.
pub const HEALTHZ: &str = "/healthz";
/// Readiness path: 200 when NATS is connected, the in stream and dedup bucket exist and the
/// store has room, else 503.
pub const READYZ: &str = "/readyz";
/// Path prefix of the gRPC health service.
pub const GRPC_HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Longest wait for NATS when checking readiness.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for the stream to be created or updated.
const ENSURE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between checks while ready.
const READY_INTERVAL: Duration = Duration::from_secs(2);
/// First and longest pause between attempts while not ready.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Whether ingress can store events.
pub(crate) struct Readiness {
    client: async_nats::Client,
    js: jetstream::Context,
    topology: Topology,
    dedup: Arc<Dedup>,
    capacity: Arc<Capacity>,
}

impl Readiness {
    pub(crate) fn new(
        client: async_nats::Client,
        topology: Topology,
        dedup: Arc<Dedup>,
        capacity: Arc<Capacity>,
    ) -> Self {
        let js = jetstream::new(client.clone());
        Self {
            client,
            js,
            topology,
            dedup,
            capacity,
        }
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Connected, the store not known to be full, the in stream and the dedup bucket exist
    /// (asked of the server now), and the bucket's handle is known to request handling.
    pub(crate) async fn is_ready(&self) -> bool {
        self.connected()
            && !self.capacity.is_full()
            && self.dedup.has_store()
            && self.exists(self.topology.in_stream()).await
            && self.exists(self.topology.dedup_stream()).await
    }

    async fn exists(&self, stream: String) -> bool {
        matches!(
            tokio::time::timeout(CHECK_TIMEOUT, self.js.get_stream(stream)).await,
            Ok(Ok(_))
        )
    }

    /// Like [`Readiness::is_ready`], creating the stream and the bucket when missing and
    /// probing a full store for room.
    async fn ensure_ready(&self) -> bool {
        if self.connected() {
            self.capacity
                .probe(&self.js, &self.topology.in_stream())
                .await;
        }
        if self.is_ready().await {
            return true;
        }
        if !self.connected() || self.capacity.is_full() {
            return false;
        }
        match tokio::time::timeout(ENSURE_TIMEOUT, self.topology.ensure_in(&self.js)).await {
            Ok(Ok(())) => {
                tracing::info!(stream = %self.topology.in_stream(), "in stream ready");
            }
            Ok(Err(error)) => {
                let cause = std::error::Error::source(&error).map(ToString::to_string);
                tracing::warn!(%error, ?cause, "cannot create in stream, will retry");
                return false;
            }
            Err(_) => {
                tracing::warn!("timed out creating in stream, will retry");
                return false;
            }
        }
        match tokio::time::timeout(ENSURE_TIMEOUT, self.topology.ensure_dedup(&self.js)).await {
            Ok(Ok(store)) => {
                tracing::info!(bucket = %self.topology.dedup_bucket(), "dedup bucket ready");
                self.dedup.set_store(store);
                true
            }
            Ok(Err(error)) => {
                let cause = std::error::Error::source(&error).map(ToString::to_string);
                tracing::warn!(%error, ?cause, "cannot create dedup bucket, will retry");
                false
            }
            Err(_) => {
                tracing::warn!("timed out creating dedup bucket, will retry");
                false
            }
        }
    }
}

/// Keeps the in stream and the dedup bucket created and the gRPC health status current until `stop` is cancelled;
/// then reports NOT_SERVING, so load balancers stop sending while connections drain.
pub(crate) async fn keep_ready(
    readiness: Arc<Readiness>,
    reporter: HealthReporter,
    stop: CancellationToken,
) {
    let mut serving = None;
    let mut retry = RETRY_MIN;
    loop {
        let ready = tokio::select! {
            () = stop.cancelled() => break,
            ready = readiness.ensure_ready() => ready,
        };
        if serving != Some(ready) {
            hookyard_core::health::set_serving(&reporter, ready).await;
            tracing::info!(ready, "readiness changed");
            serving = Some(ready);
        }
        let pause = if ready {
            retry = RETRY_MIN;
            READY_INTERVAL
        } else {
            let pause = retry;
            retry = (retry * 2).min(RETRY_MAX);
            pause
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
            // A refusal for lack of space is reported at once, not at the next check.
            () = readiness.capacity.filled(), if ready => {}
        }
    }
    hookyard_core::health::set_serving(&reporter, false).await;
}

/// `GET /healthz`.
pub(crate) async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`.
pub(crate) async fn readyz(readiness: &Readiness) -> impl IntoResponse + use<> {
    if readiness.is_ready().await {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not_ready" })),
        )
    }
}

/// Mounts a tonic service on an axum router. `tonic::service::Routes` brings its own fallback,
/// which axum refuses to merge with ours, so the service is routed directly.
pub(crate) fn with_grpc<St, S>(router: Router<St>, service: S) -> Router<St>
where
    St: Clone + Send + Sync + 'static,
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    router.route_service(
        &format!("/{}/{{*rest}}", S::NAME),
        service.map_request(|r: http::Request<axum::body::Body>| r.map(tonic::body::Body::new)),
    )
}

/// True when `path` is served by ingress itself, so no source may use it.
pub(crate) fn is_reserved(path: &str) -> bool {
    path == HEALTHZ
        || path == READYZ
        || path == hookyard_core::metrics::METRICS_PATH
        || path.starts_with(GRPC_HEALTH_PREFIX)
}
