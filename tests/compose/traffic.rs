//! Webhooks into ingress and the account of what reached the demo partner.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use serde_json::json;

pub const SHOP_USER: &str = "shop";
/// The quickstart's default, as in docker-compose.yml.
pub const SHOP_PASSWORD: &str = "demo-shop-password";

/// An event type and the handlers the compose integration routes it to.
pub fn handlers_of(event_type: &str) -> &'static [&'static str] {
    match event_type {
        "order.created" | "order.cancelled" => &["orders", "order-audit"],
        "shipment.updated" => &["shipments"],
        "refund.created" => &["refunds"],
        _ => &[],
    }
}

/// The idempotency key of the partner call a handler makes for event `id`: `<id>:<handler>`,
/// with the step's index appended for a call that is not the handler's first step
/// (`order-audit` runs its program first, then calls the partner).
pub fn partner_key(id: &str, handler: &str) -> String {
    match handler {
        "order-audit" => format!("{id}:{handler}:1"),
        _ => format!("{id}:{handler}"),
    }
}

pub fn body_of(event_type: &str, n: usize) -> serde_json::Value {
    match event_type {
        "shipment.updated" => json!({"shipment": {
            "tracking_number": format!("TRK{n:06}"), "status": "in_transit", "order_id": format!("o-{n}")
        }}),
        "refund.created" => json!({"refund": {"id": format!("r-{n}"), "amount": n}}),
        _ => json!({"order": {
            "id": format!("o-{n}"), "customer": {"email": format!("c{n}@shop.example")},
            "total": n, "currency": "EUR", "lines": [{"sku": "SKU-1", "quantity": 1}]
        }}),
    }
}

/// One answer from ingress.
#[derive(Debug, Clone)]
pub enum Answer {
    Accepted { id: String, event_type: String },
    Unavailable { retry_after: bool },
    Other(String),
}

pub struct Sender {
    http: reqwest::Client,
    url: String,
}

impl Sender {
    pub fn new(ingress_port: u16) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                // Below ingress's idle close (its 10 s header read timeout), as a sender's
                // client should be: a connection reused just as the server closes it fails a
                // request that was never answered.
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            url: format!("http://127.0.0.1:{ingress_port}/hooks/shop"),
        }
    }

    /// Sends event `n` of `event_type` with a unique delivery id under `tag`.
    pub async fn send(&self, tag: &str, event_type: &str, n: usize) -> (Instant, Answer) {
        let sent_at = Instant::now();
        let result = self
            .http
            .post(&self.url)
            .basic_auth(SHOP_USER, Some(SHOP_PASSWORD))
            .header("X-Shop-Topic", event_type)
            .header("X-Shop-Delivery-Id", format!("{tag}-{n}"))
            .json(&body_of(event_type, n))
            .send()
            .await;
        let answer = match result {
            Ok(r) if r.status() == 202 => {
                match r
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned))
                {
                    Some(id) => Answer::Accepted {
                        id,
                        event_type: event_type.to_owned(),
                    },
                    None => Answer::Other("202 without id".into()),
                }
            }
            Ok(r) if r.status() == 503 => Answer::Unavailable {
                retry_after: r.headers().contains_key("retry-after"),
            },
            Ok(r) => Answer::Other(r.status().to_string()),
            Err(e) => Answer::Other(transport_error(&e, sent_at.elapsed())),
        };
        (Instant::now(), answer)
    }
}

/// A failed exchange with its whole cause chain (reqwest's own message names only the URL) and
/// how long it took, which tells a refused or reset connection from a timeout.
fn transport_error(error: &reqwest::Error, took: Duration) -> String {
    let mut text = format!("transport error after {:.3}s: {error}", took.as_secs_f64());
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Counts for one phase of the test.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: usize,
    pub accepted: Vec<(String, String)>,
    pub unavailable: usize,
    pub unavailable_without_retry_after: usize,
    pub other: Vec<String>,
}

impl Tally {
    pub fn record(&mut self, answer: Answer) {
        self.sent += 1;
        match answer {
            Answer::Accepted { id, event_type } => self.accepted.push((id, event_type)),
            Answer::Unavailable { retry_after } => {
                self.unavailable += 1;
                if !retry_after {
                    self.unavailable_without_retry_after += 1;
                }
            }
            Answer::Other(what) => self.other.push(what),
        }
    }

    /// `<event id>:<handler>` keys every accepted event must reach the partner with.
    /// The accepted events whose type `pick` chooses, and the rest (each with no other
    /// answers: those stay with the whole).
    pub fn split(&self, pick: impl Fn(&str) -> bool) -> (Tally, Tally) {
        let (picked, rest): (Vec<_>, Vec<_>) =
            self.accepted.iter().cloned().partition(|(_, t)| pick(t));
        let part = |accepted: Vec<(String, String)>| Tally {
            sent: accepted.len(),
            accepted,
            ..Tally::default()
        };
        (part(picked), part(rest))
    }

    pub fn expected(&self) -> HashSet<String> {
        self.accepted
            .iter()
            .flat_map(|(id, t)| handlers_of(t).iter().map(move |h| partner_key(id, h)))
            .collect()
    }
}

/// What the demo partner recorded, by idempotency key.
pub struct Partner {
    http: reqwest::Client,
    url: String,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub auth: String,
    pub body: serde_json::Value,
}

impl Partner {
    pub fn new(demo_port: u16) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: format!("http://127.0.0.1:{demo_port}/_demo/calls"),
        }
    }

    /// Calls by idempotency key.
    pub async fn calls(&self) -> anyhow::Result<HashMap<String, Vec<Call>>> {
        let v: serde_json::Value = self.http.get(&self.url).send().await?.json().await?;
        let mut out: HashMap<String, Vec<Call>> = HashMap::new();
        for c in v["calls"].as_array().cloned().unwrap_or_default() {
            let Some(key) = c["idempotency_key"].as_str() else {
                continue;
            };
            out.entry(key.to_owned()).or_default().push(Call {
                path: c["path"].as_str().unwrap_or_default().to_owned(),
                auth: c["auth"].as_str().unwrap_or_default().to_owned(),
                body: c["body"].clone(),
            });
        }
        Ok(out)
    }

    /// Waits until every expected key has reached the partner; returns (delivered, duplicates).
    pub async fn wait_delivered(
        &self,
        expected: &HashSet<String>,
        limit: Duration,
    ) -> anyhow::Result<(usize, usize)> {
        let _ = hookyard_testkit::wait_for(limit, "deliveries", || async {
            self.calls()
                .await
                .map(|c| expected.iter().all(|k| c.contains_key(k)))
                .unwrap_or(false)
        })
        .await;
        let calls = self.calls().await?;
        let delivered = expected.iter().filter(|k| calls.contains_key(*k)).count();
        // A call with a 2xx answer counted twice for one key: a duplicate delivery.
        let duplicates = expected
            .iter()
            .filter_map(|k| calls.get(k))
            .map(|c| c.len().saturating_sub(1))
            .sum();
        Ok((delivered, duplicates))
    }
}
