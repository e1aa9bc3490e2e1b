//! Structured logs for every service: JSON lines by default, human-readable with
//! `HOOKYARD_LOG_FORMAT=pretty`, filtered by `RUST_LOG` (default `info`); and, when the
//! `OTEL_*` environment asks for them, OpenTelemetry traces ([`crate::trace`]). A JSON line
//! logged within a span carries that span's fields under `span` (the event, handler or
//! connection, and `trace_id` when traces are on), so lines need not repeat them.

use opentelemetry_sdk::trace::Tracer;
use tracing_subscriber::{
    EnvFilter, Layer as _, fmt::MakeWriter, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

use crate::trace::Traces;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// One JSON object per line (for containers and log shippers).
    #[default]
    Json,
    /// Human-readable lines (for a terminal).
    Pretty,
}

/// Installs the global tracing subscriber, with the trace exporter when the environment asks
/// for one. Call once, from `main`, and keep what it returns until the end: dropping it
/// flushes the spans not yet exported.
pub fn init(service: &'static str, format: LogFormat) -> Traces {
    let env = |name: &str| std::env::var(name).ok();
    let (traces, tracer, trace_error) = if crate::trace::wanted(&env) {
        match crate::trace::start(service, None) {
            Ok((traces, tracer)) => (traces, Some(tracer), None),
            Err(error) => (Traces::off(), None, Some(error)),
        }
    } else {
        (Traces::off(), None, None)
    };
    let result = subscriber(format, tracer, std::io::stdout).try_init();
    if result.is_ok() {
        tracing::debug!(service, traces = traces.is_on(), "telemetry initialised");
    }
    if let Some(error) = trace_error {
        tracing::warn!(%error, "traces off: the OTLP exporter could not be built");
    }
    traces
}

/// The subscriber every service installs: the `RUST_LOG` filter (default `info`), log lines in
/// `format` to `writer`, and spans to `tracer` when traces are on.
pub fn subscriber<W>(
    format: LogFormat,
    tracer: Option<Tracer>,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
    };
    let spans = tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(spans)
}

/// An error and its causes on one line, for logs.
pub fn report(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        // Some errors (async-nats's) already print their cause; do not repeat it.
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = e.source();
    }
    out
}
