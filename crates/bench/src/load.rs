//! The HTTP load generator: plain HTTP/1.1 keep-alive connections written by hand, so the
//! generator costs little of the two cores it shares with what it measures.
//!
//! Closed loop: `c` connections, each sending its next request when the previous is answered.
//! Open loop: requests scheduled at a fixed rate; latency counts from the scheduled time, so
//! a stalled server is not hidden by the generator waiting (no coordinated omission).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

/// What a load run saw.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// 2xx answers.
    pub ok: u64,
    /// 503 or 429 answers.
    pub shed: u64,
    /// 503/429 answers without `Retry-After`.
    pub shed_without_retry_after: u64,
    /// Any other status.
    pub other: u64,
    /// Connection failures.
    pub errors: u64,
    /// Latency of every answered request, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// With [`Bodies::tracked`]: the number of each body answered 2xx and when the answer came.
    pub accepts: Vec<(u64, Instant)>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.shed += other.shed;
        self.shed_without_retry_after += other.shed_without_retry_after;
        self.other += other.other;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
        self.accepts.extend(other.accepts);
    }

    pub fn ok_per_second(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }

    /// Latency percentile `p` (0..=100) in microseconds.
    pub fn percentile(&mut self, p: f64) -> u32 {
        percentile(&mut self.latencies_us, p)
    }
}

pub fn percentile(values: &mut [u32], p: f64) -> u32 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// Unique request bodies of one size: JSON whose first key is `"id":"<prefix>-<n>"`, then
/// padding.
#[derive(Clone)]
pub struct Bodies {
    size: usize,
    prefix: String,
    next: Arc<AtomicU64>,
    /// Whether runs keep each accepted body's number and answer time ([`Outcome::accepts`]),
    /// so an end-to-end run can match what the partner received to what ingress accepted.
    track: bool,
}

impl Bodies {
    pub fn new(size: usize, prefix: &str) -> Self {
        Self {
            size,
            prefix: prefix.to_owned(),
            next: Arc::new(AtomicU64::new(0)),
            track: false,
        }
    }

    /// Like [`Bodies::new`], with every accepted body's number and answer time kept.
    pub fn tracked(size: usize, prefix: &str) -> Self {
        Self {
            track: true,
            ..Self::new(size, prefix)
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The next body and its number `n` (its id is `<prefix>-<n>`).
    fn numbered(&self) -> (u64, Vec<u8>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let head = format!("{{\"id\":\"{}-{n}\",\"pad\":\"", self.prefix);
        let mut body = Vec::with_capacity(self.size.max(head.len() + 2));
        body.extend_from_slice(head.as_bytes());
        body.resize(self.size.saturating_sub(2).max(head.len()), b'x');
        body.extend_from_slice(b"\"}");
        (n, body)
    }
}

/// The id a body of [`Bodies`] carries: the string value of its leading `"id"` key.
pub fn body_id(body: &[u8]) -> Option<&str> {
    let rest = body.strip_prefix(b"{\"id\":\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// One keep-alive connection.
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

enum Answer {
    Ok,
    Shed { retry_after: bool },
    Other,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    async fn post(&mut self, path: &str, body: &[u8]) -> std::io::Result<Answer> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let result = self.exchange(path, body).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, path: &str, body: &[u8]) -> std::io::Result<Answer> {
        let stream = self
            .stream
            .as_mut()
            .ok_or(std::io::ErrorKind::NotConnected)?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut request = Vec::with_capacity(head.len() + body.len());
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(body);
        stream.write_all(&request).await?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        let header_end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..header_end]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let retry_after = head.lines().any(|l| l.starts_with("retry-after:"));
        let closes = head.lines().any(|l| l.starts_with("connection: close"));
        let mut have = self.buf.len() - header_end;
        while have < length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            have += n;
        }
        if closes {
            self.stream = None;
        }
        Ok(match status {
            200..=299 => Answer::Ok,
            429 | 503 => Answer::Shed { retry_after },
            _ => Answer::Other,
        })
    }
}

/// Counts one answer; `tracked` is the body's number when its acceptance is to be kept.
fn record(
    outcome: &mut Outcome,
    answer: std::io::Result<Answer>,
    started: Instant,
    tracked: Option<u64>,
) {
    match answer {
        Ok(answer) => {
            let now = Instant::now();
            outcome
                .latencies_us
                .push((now - started).as_micros().min(u32::MAX as u128) as u32);
            match answer {
                Answer::Ok => {
                    outcome.ok += 1;
                    if let Some(n) = tracked {
                        outcome.accepts.push((n, now));
                    }
                }
                Answer::Shed { retry_after } => {
                    outcome.shed += 1;
                    if !retry_after {
                        outcome.shed_without_retry_after += 1;
                    }
                }
                Answer::Other => outcome.other += 1,
            }
        }
        Err(_) => outcome.errors += 1,
    }
}

/// `concurrency` connections, each posting back to back for `duration`.
pub async fn closed_loop(
    addr: SocketAddr,
    path: &str,
    bodies: &Bodies,
    concurrency: usize,
    duration: Duration,
) -> Outcome {
    closed_loop_until(addr, path, bodies, concurrency, Stop::after(duration)).await
}

/// When a closed loop stops: at `end`, or earlier once `accepted` requests got a 2xx.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    pub end: Duration,
    pub accepted: Option<u64>,
}

impl Stop {
    pub fn after(duration: Duration) -> Self {
        Self {
            end: duration,
            accepted: None,
        }
    }

    /// Once `events` are accepted, or after `limit` at the latest (a stalled server).
    pub fn accepted(events: u64, limit: Duration) -> Self {
        Self {
            end: limit,
            accepted: Some(events),
        }
    }
}

/// `concurrency` connections, each posting back to back until `stop`.
pub async fn closed_loop_until(
    addr: SocketAddr,
    path: &str,
    bodies: &Bodies,
    concurrency: usize,
    stop: Stop,
) -> Outcome {
    let started = Instant::now();
    let end = started + stop.end;
    let wanted = stop.accepted.unwrap_or(u64::MAX);
    let accepted = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (path, bodies, accepted) = (path.to_owned(), bodies.clone(), accepted.clone());
            tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                let mut outcome = Outcome::default();
                while Instant::now() < end && accepted.load(Ordering::Relaxed) < wanted {
                    let (n, body) = bodies.numbered();
                    let sent = Instant::now();
                    let answer = conn.post(&path, &body).await;
                    match &answer {
                        Ok(Answer::Ok) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                    record(&mut outcome, answer, sent, bodies.track.then_some(n));
                }
                outcome
            })
        })
        .collect();
    collect(tasks, started).await
}

/// Requests at `rate` per second for `duration`, over at most `connections` connections;
/// requests the connections cannot send by the end of `duration` are dropped.
pub async fn open_loop(
    addr: SocketAddr,
    path: &str,
    bodies: &Bodies,
    rate: f64,
    duration: Duration,
    connections: usize,
) -> Outcome {
    let started = Instant::now();
    let total = (rate * duration.as_secs_f64()).ceil() as u64;
    let end = started + duration;
    let ticket = Arc::new(AtomicU64::new(0));
    let interval = 1.0 / rate.max(1e-9);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (path, bodies, ticket) = (path.to_owned(), bodies.clone(), ticket.clone());
            tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                let mut outcome = Outcome::default();
                loop {
                    let n = ticket.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    let due = started + Duration::from_secs_f64(n as f64 * interval);
                    // Bounded in time: what the connections could not send by the end is not
                    // sent (the offered rate actually reached is the answered count / time).
                    if Instant::now() >= end {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    let (n, body) = bodies.numbered();
                    let answer = conn.post(&path, &body).await;
                    record(&mut outcome, answer, due, bodies.track.then_some(n));
                }
                outcome
            })
        })
        .collect();
    collect(tasks, started).await
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Outcome>>, started: Instant) -> Outcome {
    let mut all = Outcome::default();
    for task in tasks {
        if let Ok(outcome) = task.await {
            all.merge(outcome);
        }
    }
    all.seconds = started.elapsed().as_secs_f64();
    all
}
