//! What the services of this test process logged and traced, for the secrets scan every stack
//! runs when it stops: the process's global subscriber is the one every service installs
//! (`hookyard_core::telemetry::subscriber`), writing JSON log lines to memory and exporting
//! spans over OTLP to a receiver in this process.
//!
//! Set up once per process, on its own thread: each test has its own runtime, which ends with
//! the test, and the receiver must outlive them all.

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use hookyard_core::{telemetry::LogFormat, trace::Traces};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value::Value, trace::v1::Span,
};
use prost::Message as _;

/// The process's log lines and exported spans.
pub struct Observed {
    logs: Logs,
    spans: Spans,
    traces: Traces,
}

/// The process's [`Observed`], set up on first use; `None` when it could not be (then the
/// scan has nothing to read, and says so).
pub fn observed() -> Option<&'static Observed> {
    static OBSERVED: OnceLock<Option<Observed>> = OnceLock::new();
    OBSERVED
        .get_or_init(|| match start() {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!("no log and span capture in this process: {e:#}");
                None
            }
        })
        .as_ref()
}

fn start() -> anyhow::Result<Observed> {
    let spans = Spans::default();
    let url = receiver(spans.clone())?;
    let (traces, tracer) =
        hookyard_core::trace::start("hookyard-e2e", Some(&url)).map_err(anyhow::Error::msg)?;
    let logs = Logs::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(hookyard_core::telemetry::subscriber(
        LogFormat::Json,
        Some(tracer),
        move || writer.clone(),
    ))?;
    Ok(Observed {
        logs,
        spans,
        traces,
    })
}

impl Observed {
    /// Every span exported so far, after exporting what is buffered.
    pub fn spans(&self) -> Vec<Span> {
        self.traces.flush();
        self.spans.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Every log line so far.
    pub fn logs(&self) -> String {
        self.logs
            .0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Fails when a span attribute or a log line holds one of `secrets`; prints what it read.
    pub fn assert_none_holds(&self, secrets: &[&str]) -> anyhow::Result<()> {
        let spans = self.spans();
        let values: Vec<String> = spans
            .iter()
            .flat_map(|s| s.attributes.iter())
            .filter_map(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(v)) => Some(format!("{}={v}", a.key)),
                _ => None,
            })
            .collect();
        let logs = self.logs();
        for secret in secrets {
            anyhow::ensure!(
                !values.iter().any(|v| v.contains(secret)),
                "a span attribute holds a secret ({} characters)",
                secret.len()
            );
            anyhow::ensure!(
                !logs.contains(secret),
                "a log line holds a secret ({} characters)",
                secret.len()
            );
        }
        eprintln!(
            "secrets scan: {} spans with {} string attributes, {} log lines, none holds any of {} values",
            spans.len(),
            values.len(),
            logs.lines().count(),
            secrets.len()
        );
        Ok(())
    }
}

/// Spans the receiver got.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Span>>>);

/// An OTLP/HTTP trace receiver on loopback, on its own thread; its base URL.
fn receiver(spans: Spans) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}", listener.local_addr()?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let app = Router::new()
                .route("/v1/traces", post(export))
                .with_state(spans);
            if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                let _ = axum::serve(listener, app).await;
            }
        });
    });
    Ok(url)
}

async fn export(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
    if let (Ok(request), Ok(mut all)) = (
        ExportTraceServiceRequest::decode(body.as_ref()),
        spans.0.lock(),
    ) {
        for resource in request.resource_spans {
            for scope in resource.scope_spans {
                all.extend(scope.spans);
            }
        }
    }
    Vec::new()
}

/// Log lines the services wrote, as the JSON subscriber writes them.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut all) = self.0.lock() {
            all.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
