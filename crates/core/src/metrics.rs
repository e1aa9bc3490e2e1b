//! Prometheus metrics: every service keeps its own [`Registry`] (no process-global state, so a
//! test can run several services in one process) and serves it as OpenMetrics text.
//!
//! Names are `hookyard_<service>_<what>`; labels are bounded sets (source, handler and
//! connection names from the integration file, outcome kinds from the code), never values a
//! sender controls, so a hostile sender cannot grow the series without bound.

pub use prometheus_client::registry::Registry;

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Path metrics are served on.
pub const METRICS_PATH: &str = "/metrics";

/// The registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, registry) {
        // Only a broken label encoder fails here; serve what was written.
        tracing::warn!(%error, "failed to encode metrics");
    }
    out
}

/// Serves a gRPC service's `routes` plus `GET /metrics` for `registry` on `listener` until
/// `signal` completes — the one server setup of every service whose only listener is gRPC. The
/// server accepts HTTP/1 so a Prometheus scrape (HTTP/1.1) reaches `/metrics`; gRPC clients
/// keep using HTTP/2.
pub async fn serve_grpc(
    routes: tonic::service::Routes,
    registry: std::sync::Arc<Registry>,
    listener: tokio::net::TcpListener,
    signal: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let metrics = axum::Router::new().route(
        METRICS_PATH,
        axum::routing::get(move || async move {
            (
                [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)],
                render(&registry),
            )
        }),
    );
    let routes = tonic::service::Routes::from(routes.into_axum_router().merge(metrics));
    tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            signal,
        )
        .await
}

/// A gRPC status code as a label value: `ok`, `unavailable`, `deadline_exceeded`, …
pub fn code_label(code: tonic::Code) -> String {
    let name = format!("{code:?}");
    let mut snake = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    snake
}

/// Histogram buckets for latencies from 0.5 ms to ~16 s (doubling).
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn a_registered_counter_is_rendered() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("hookyard_test_things", "Things counted", counter.clone());
        counter.inc();
        let text = render(&registry);
        assert!(text.contains("hookyard_test_things_total 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn grpc_codes_become_snake_case_labels() {
        assert_eq!(code_label(tonic::Code::Ok), "ok");
        assert_eq!(
            code_label(tonic::Code::DeadlineExceeded),
            "deadline_exceeded"
        );
        assert_eq!(
            code_label(tonic::Code::FailedPrecondition),
            "failed_precondition"
        );
    }
}
