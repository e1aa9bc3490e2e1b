//! The accept loop: ingress's own, rather than `axum::serve`, because a public webhook
//! endpoint needs the connection settings `axum::serve` does not expose.
//!
//! - **Header read timeout.** A client must deliver its whole request head within
//!   [`ServerLimits::header_read_timeout`] or the connection is closed without an answer (a
//!   client sending one byte per second — slowloris — holds a socket for that long, not
//!   forever); a connection that sends nothing is closed after the same time. The body has its
//!   own per-source `read_timeout` (408). HTTP/2 (prior knowledge, used by gRPC health checks)
//!   has no per-request header timer in hyper; its request bodies still have the read timeout.
//! - **Header size.** A request head larger than [`ServerLimits::max_header_bytes`] gets
//!   431 Request Header Fields Too Large from hyper, without being buffered further; HTTP/2
//!   advertises the same limit as `SETTINGS_MAX_HEADER_LIST_SIZE`.
//! - **Peer address.** Each request carries `ConnectInfo<SocketAddr>` for `allow_ips`.
//! - **Graceful stop.** On shutdown the listener is closed first, then every connection is told
//!   to finish its in-flight requests and close; the caller bounds that with its grace period.

use std::time::Duration;

use axum::{Router, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// hyper refuses a read buffer below this size.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;

/// Limits applied to every connection, before any source is known.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Longest time from a connection's first byte (or the end of the previous request on a
    /// kept-alive connection) to the end of the request head.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), at least [`MIN_HEADER_BYTES`].
    pub max_header_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, then drains open connections.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    // Shared by every connection task; configured once.
    let builder = std::sync::Arc::new(builder);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "failed to set TCP_NODELAY");
        }
        let service = router
            .clone()
            .map_request(move |mut request: http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let (builder, watcher, shutdown) = (builder.clone(), graceful.watcher(), shutdown.clone());
        tokio::spawn(async move {
            // hyper's header timer starts once it knows the protocol, which takes the first
            // bytes; a connection that sends nothing at all is closed here instead.
            let mut first_byte = [0u8; 1];
            tokio::select! {
                first = tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first_byte)) => {
                    // `peek` waits for a byte without taking it (0 is the peer closing).
                    if !matches!(first, Ok(Ok(1..))) {
                        tracing::debug!(%peer, "connection closed: nothing sent");
                        return;
                    }
                }
                () = shutdown.cancelled() => return,
            }
            let connection = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .into_owned();
            // Timeouts, resets and malformed requests end here; hyper has answered what it could.
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Per-connection accept errors (the peer went away) are skipped; resource errors (too many
/// open files) would make `accept` fail in a busy loop, so they pause the loop briefly, as
/// hyper's and axum's servers do.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(%error, "accept failed, pausing the listener");
    tokio::time::sleep(Duration::from_millis(250)).await;
}
