//! Polling sources run by real `hookyard-ingress` processes (so they can be killed with
//! SIGKILL), with NATS, egress, the router and a worker for the handler side, and a loopback
//! partner that pages its records (`hookyard_testkit::lister`).

mod backoff;
mod crash;
mod dedup;
mod replicas;
mod stack;
