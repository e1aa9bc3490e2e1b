//! End-to-end tests of the whole pipeline on a real NATS JetStream (a container started by
//! `hookyard-testkit`) and real HTTP servers on loopback standing in for the partner API and the
//! OAuth 2.0 authorization server (wiremock):
//!
//! partner ──HTTP──▶ ingress ──▶ JetStream ──▶ router ──▶ JetStream ──▶ worker ──gRPC──▶ egress
//! ──HTTP──▶ partner API, with token ──HTTP──▶ authorization server on the way.
//!
//! Every service is its real `run`, started in this process on a `127.0.0.1:0` listener and
//! reached over real TCP (HTTP and gRPC) — see `harness`. The console test drives a real headless
//! Chromium through chromedriver.

mod harness;
mod observed;

mod consent;
mod console;
mod delivery;
mod fanout;
mod once;
mod operate;
mod outbound;
mod pipeline;
mod poll;
mod programs;
mod refusals;
mod reply;
mod retry;
mod traces;
