//! OpenTelemetry traces: one trace per event, from the sender's webhook to the partner call.
//!
//! Off unless the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set; then
//! spans go over OTLP/HTTP (protobuf) with the SDK's own reading of the other `OTEL_*`
//! variables: `OTEL_SERVICE_NAME` (default `hookyard-<service>`), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` / `…_ARG`, `OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`.
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off again.
//!
//! The context travels as W3C trace context (`traceparent`, `tracestate`): from the sender's
//! request (when it sent one) into the `HOOKYARD_IN` message's NATS headers, from there to the
//! work item's, in gRPC metadata to egress and the token service, and as `traceparent` on the
//! partner request. Each service starts its span for a message or call with [`adopt`], from
//! what arrived, so nothing depends on a span being current across tasks.
//!
//! Span fields are names, ids, types and statuses: never a body, a header value or a secret.

use async_nats::HeaderMap as NatsHeaders;
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{SdkTracerProvider, Tracer},
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The tracer provider, when traces are on; shut down (flushing what is buffered) on drop.
#[must_use = "dropping it stops exporting traces"]
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Traces {
    /// No traces.
    pub fn off() -> Self {
        Self { provider: None }
    }

    /// Whether spans are exported.
    pub fn is_on(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now instead of at the next batch.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            let _ = provider.force_flush();
        }
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("traces not flushed at exit: {error}");
        }
    }
}

/// Whether the environment asks for traces (see the module docs).
pub fn wanted(env: &dyn Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Builds the OTLP exporter and the provider for `service`, sending to `endpoint` (the base
/// URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` gives it) or, with `None`, where the environment says,
/// and makes W3C trace context the propagator. Fails with the reason when the exporter cannot
/// be built (an unusable endpoint); the caller then runs without traces rather than not at all.
pub fn start(service: &'static str, endpoint: Option<&str>) -> Result<(Traces, Tracer), String> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = endpoint {
        exporter = exporter.with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')));
    }
    let exporter = exporter.build().map_err(|e| e.to_string())?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service);
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer(service);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok((
        Traces {
            provider: Some(provider),
        },
        tracer,
    ))
}

/// Makes `parent` (what arrived with a message or request; empty for none) the parent of
/// `span`, and records the trace id in the span's `trace_id` field, so log lines within it
/// carry it. Call before the span is first entered.
pub fn adopt(span: &tracing::Span, parent: Context) {
    let _ = span.set_parent(parent);
    let context = span.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
    }
}

/// The trace context in a NATS message's headers (empty when none).
pub fn from_nats(headers: Option<&NatsHeaders>) -> Context {
    match headers {
        Some(headers) => TraceContextPropagator::new().extract(&NatsExtractor(headers)),
        None => Context::new(),
    }
}

/// Writes `span`'s trace context into NATS headers (nothing when traces are off).
pub fn to_nats(span: &tracing::Span, headers: &mut NatsHeaders) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut NatsInjector(headers));
}

/// The trace context in HTTP headers or gRPC metadata (its headers), empty when none.
pub fn from_http(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HttpCarrier::Read(headers))
}

/// The trace context of a webhook's sender: its `traceparent` only. Its `tracestate` is the
/// sender's vendor data, which would otherwise travel on to the partner's request.
pub fn from_sender(headers: &http::HeaderMap) -> Context {
    let mut parent = http::HeaderMap::new();
    if let Some(value) = headers.get("traceparent") {
        parent.insert("traceparent", value.clone());
    }
    from_http(&parent)
}

/// Writes `span`'s trace context into HTTP headers or gRPC metadata (nothing when off).
pub fn to_http(span: &tracing::Span, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut HttpCarrier::Write(headers));
}

/// [`to_http`] for a tonic request's metadata.
pub fn to_grpc<T>(span: &tracing::Span, request: &mut tonic::Request<T>) {
    let mut headers = std::mem::take(request.metadata_mut()).into_headers();
    to_http(span, &mut headers);
    *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
}

/// [`from_http`] for a tonic request's metadata.
pub fn from_grpc<T>(request: &tonic::Request<T>) -> Context {
    let headers = request.metadata().clone().into_headers();
    from_http(&headers)
}

struct NatsExtractor<'a>(&'a NatsHeaders);

impl Extractor for NatsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

struct NatsInjector<'a>(&'a mut NatsHeaders);

impl Injector for NatsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

enum HttpCarrier<'a> {
    Read(&'a http::HeaderMap),
    Write(&'a mut http::HeaderMap),
}

impl Extractor for HttpCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self {
            Self::Read(h) => h.get(key).and_then(|v| v.to_str().ok()),
            Self::Write(h) => h.get(key).and_then(|v| v.to_str().ok()),
        }
    }

    fn keys(&self) -> Vec<&str> {
        match self {
            Self::Read(h) => h.keys().map(http::HeaderName::as_str).collect(),
            Self::Write(h) => h.keys().map(http::HeaderName::as_str).collect(),
        }
    }
}

impl Injector for HttpCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Self::Write(h), Ok(name), Ok(value)) = (
            self,
            http::HeaderName::try_from(key),
            http::HeaderValue::try_from(value),
        ) {
            h.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn traces_are_on_only_with_an_endpoint_and_not_disabled() {
        assert!(!wanted(&env(&[])));
        assert!(!wanted(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(wanted(&env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:4318"
        )])));
        assert!(wanted(&env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )])));
        assert!(!wanted(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "TRUE")
        ])));
        assert!(!wanted(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none")
        ])));
    }

    #[test]
    fn hostile_trace_context_is_ignored_not_trusted() {
        for bad in [
            "00-00000000000000000000000000000000-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736",
            "",
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", http::HeaderValue::from_static(bad));
            assert!(
                !from_http(&headers).span().span_context().is_valid(),
                "{bad}"
            );
        }
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let cx = from_http(&headers);
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn a_senders_tracestate_is_not_carried_on() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        headers.insert("tracestate", http::HeaderValue::from_static("vendor=steer"));
        assert_eq!(
            from_http(&headers)
                .span()
                .span_context()
                .trace_state()
                .header(),
            "vendor=steer"
        );
        let cx = from_sender(&headers);
        assert!(cx.span().span_context().is_valid());
        assert_eq!(cx.span().span_context().trace_state().header(), "");
    }
}
