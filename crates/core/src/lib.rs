//! Shared foundation of every hookyard service; depends on no service.
//!
//! Owns:
//! - [`config`]: the integration file (`sources`, `routes`, `handlers`, `connections`), its
//!   secret references and its validation;
//! - [`expr`]: the one expression language for dynamic values (jq through `jaq`, plus short forms);
//! - [`json`]: the depth bound every untrusted JSON body is measured against before it is parsed;
//! - [`streams`]: JetStream stream and subject names (the only place they are spelled) and stream setup;
//! - [`batch`]: atomic JetStream batches (ingress's group commit and dedup records, the
//!   router's work items); [`work`]: storing one work item, in the work queue or, at a
//!   handler's cap, in the wait stream;
//! - [`envelope`]: event ids, dedup keys and the NATS header names events carry;
//! - [`settings`]: service settings shared by every binary (NATS URL, namespace, config path);
//! - [`grpc`]: limits both ends of a gRPC call share;
//! - [`health`]: `grpc.health.v1` serving and the `healthcheck` probe used by containers;
//! - [`metrics`]: Prometheus (OpenMetrics) rendering of a service's own registry;
//! - [`shutdown`] and [`telemetry`]: SIGTERM/SIGINT handling and structured logs;
//! - [`service`]: what every binary's `main` does around `run` (`healthcheck`, loading the
//!   integration file, draining within the shutdown grace, the exit code);
//! - [`reload`]: re-reading the integration file while a service runs (router, egress);
//! - [`retry`]: retrying start-up steps (stream and consumer setup) until NATS answers;
//! - [`pull`]: the bounded-concurrency pull loop over a JetStream consumer (router, worker);
//! - [`redact`]: which header values and query parameters of a stored request are hidden from
//!   operators (admin API, console, egress's audit).
//!
//! It does not own any service's behaviour: ingress, router, worker, egress and token live in
//! their own crates and meet only through NATS and gRPC.

/// Every hookyard binary allocates with mimalloc: under load glibc's malloc cost ingress about
/// 15% of its CPU, partly in lock contention between its threads (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod batch;
pub mod config;
pub mod dlq;
pub mod envelope;
pub mod expr;
pub mod fault;
pub mod grpc;
pub mod health;
pub mod json;
pub mod metrics;
pub mod pull;
pub mod redact;
pub mod reload;
pub mod retry;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod streams;
pub mod telemetry;
pub mod trace;
pub mod work;

pub use config::Integration;
