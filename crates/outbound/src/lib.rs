//! How hookyard reaches a partner's servers, shared by every service that does: egress (partner
//! calls) and the token service (token requests to a connection's authorization server).
//!
//! - [`guard`]: the SSRF guard — which addresses a connection may reach;
//! - [`resolve`]: the DNS resolver that hands the HTTP client only addresses the guard allows;
//! - [`client`]: the HTTP client of one connection: that resolver, the redirect policy, TLS
//!   (trusted CAs, client certificate), the timeout, and no proxy.

pub mod client;
pub mod guard;
pub mod resolve;

pub use client::ClientError;
pub use guard::{Guard, Refusal};
