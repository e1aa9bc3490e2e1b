//! Integration tests of ingress against a real NATS JetStream (one container per test), with
//! ingress started in-process on port 0 in a unique namespace.

mod harness;

mod accept;
mod access;
mod availability;
mod batch;
mod dedup;
mod framing;
mod fuzz;
mod handshake;
mod hostile;
mod metrics;
mod polling;
mod readiness;
mod refuse;
mod signature;
