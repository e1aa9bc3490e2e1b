//! The partner API of the end-to-end runs: a loopback HTTP server in the bench process that
//! answers 200 at once and notes when each event arrived. It runs in the bench so its clock is
//! the load generator's: latency is the receive instant minus the instant ingress's 2xx came
//! back, on one monotonic clock.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{task::JoinHandle, time::Instant};

use crate::load::body_id;

/// One event received: its body's id (see [`crate::load::Bodies`]) and when it came.
pub type Receipt = (String, Instant);

/// The running sink; stops serving when dropped.
pub struct Sink {
    pub addr: SocketAddr,
    receipts: Arc<Mutex<Vec<Receipt>>>,
    task: JoinHandle<()>,
}

impl Sink {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let receipts = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept(listener, receipts.clone()));
        Ok(Self {
            addr,
            receipts,
            task,
        })
    }

    /// Everything received since the last call.
    pub fn take(&self) -> Vec<Receipt> {
        std::mem::take(&mut *self.receipts.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: tokio::net::TcpListener, receipts: Arc<Mutex<Vec<Receipt>>>) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let receipts = receipts.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let receipts = receipts.clone();
                async move {
                    // Noted before the answer: once egress has the 200, the event is received.
                    if let Ok(body) = request.into_body().collect().await {
                        let at = Instant::now();
                        if let Some(id) = body_id(&body.to_bytes()) {
                            let mut receipts = receipts.lock().unwrap_or_else(|e| e.into_inner());
                            receipts.push((id.to_owned(), at));
                        }
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
