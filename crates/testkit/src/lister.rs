//! A loopback partner with a REST list endpoint that pages its records, for polling tests.
//!
//! `GET <prefix>/v1/orders?since=N&offset=K` answers the records whose `updated_at` is at least
//! `N` (inclusive, as many APIs are: the last record of a poll is read again by the next one),
//! oldest first, [`Lister::PAGE_SIZE`] per page from offset `K`. The next page is named either
//! in the body (`{"data": [...], "next": "K"}`, [`Paging::Cursor`]) or in a
//! `Link: <…>; rel="next"` header ([`Paging::Link`]). Any path prefix is accepted and recorded,
//! so replicas polling with different prefixes can be told apart. The partner can be made to
//! fail (a status), to hang (a delay), or to hold one page (a delay on one offset), and it
//! records every request it got. `POST /sink/<id>` is a handler's destination: it answers 200
//! and is recorded too.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};

/// Name of the polling source of [`source_config`].
pub const SOURCE: &str = "erp-orders";

/// The integration-file part that polls the lister's orders every second on
/// `{prefix}/v1/orders` through connection `erp` (by cursor `updated_at`, versioned by it, the
/// next page found by `pagination`), and routes each to handler `orders`, which posts it to
/// `/sink/<id>/<updated_at>` through connection `sink`. The caller adds the connections.
pub fn source_config(prefix: &str, pagination: &str, sink: &str) -> String {
    format!(
        r#"
[sources.{SOURCE}]
event_type = {{ jq = '"order." + .status' }}

[sources.{SOURCE}.poll]
connection = "erp"
path = "{prefix}/v1/orders"
query = {{ since = {{ jq = "$cursor" }} }}
every = "1s"
records = ".data"
record_id = ".id"
record_version = ".updated_at"
cursor = {{ record = ".updated_at" }}
initial_cursor = 0
pagination = {pagination}
backoff = {{ initial = "200ms", max = "2s" }}

[[routes]]
event = "order.*"
source = "{SOURCE}"
handlers = ["orders"]

[handlers.orders]
[[handlers.orders.steps]]
type = "http"
connection = "{sink}"
path = {{ jq = '"/sink/\(.id)/\(.updated_at)"' }}
"#
    )
}

/// How the next page is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// `"next"` in the body (the offset of the next page, as text), `null` on the last.
    Cursor,
    /// A `Link: <…>; rel="next"` header, none on the last page.
    Link,
}

/// One request the list endpoint got.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// The path before `/v1/orders`.
    pub prefix: String,
    /// `since` and `offset`.
    pub since: i64,
    /// Offset of the page asked for.
    pub offset: usize,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    records: Vec<Value>,
    fail: Option<u16>,
    delay: Option<Duration>,
    hold: Option<(usize, Duration)>,
    seen: Vec<Seen>,
}

/// The partner.
pub struct Lister {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

struct Answer {
    state: Arc<Mutex<State>>,
    paging: Paging,
    base: String,
}

impl Lister {
    /// Records per page.
    pub const PAGE_SIZE: usize = 2;

    /// Starts the partner with no records.
    pub async fn start(paging: Paging) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(matchers::method("GET"))
            .and(matchers::path_regex(r"^(/[a-z0-9]+)?/v1/orders$"))
            .respond_with(Answer {
                state: state.clone(),
                paging,
                base: server.uri(),
            })
            .mount(&server)
            .await;
        Mock::given(matchers::method("POST"))
            .and(matchers::path_regex(r"^/sink/"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server)
            .await;
        Self { server, state }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    /// Adds or replaces (same `id`) a record `{"id", "updated_at", "status"}`.
    pub fn put(&self, id: &str, updated_at: i64, status: &str) {
        let record = json!({"id": id, "updated_at": updated_at, "status": status});
        self.with(|s| {
            s.records.retain(|r| r["id"] != id);
            s.records.push(record);
            s.records.sort_by_key(|r| r["updated_at"].as_i64());
        });
    }

    /// Answers every list request with `status` (`None`: normally again).
    pub fn fail(&self, status: Option<u16>) {
        self.with(|s| s.fail = status);
    }

    /// Delays every list answer by `delay` (`None`: no delay).
    pub fn delay(&self, delay: Option<Duration>) {
        self.with(|s| s.delay = delay);
    }

    /// Delays the answer for the page at `offset` by `delay` (`None`: no page is held).
    pub fn hold(&self, page: Option<(usize, Duration)>) {
        self.with(|s| s.hold = page);
    }

    /// Every list request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.with(|s| s.seen.clone())
    }

    /// The ids of every `POST /sink/<id>` so far, in arrival order.
    pub async fn sunk(&self) -> Vec<String> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.url.path().strip_prefix("/sink/").map(str::to_owned))
            .collect()
    }
}

fn query(request: &Request, name: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Respond for Answer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let since = query(request, "since")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let offset = query(request, "offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let prefix = request
            .url
            .path()
            .strip_suffix("/v1/orders")
            .unwrap_or_default()
            .to_owned();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.seen.push(Seen {
            at: Instant::now(),
            prefix: prefix.clone(),
            since,
            offset,
            authorization: request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
        if let Some(status) = state.fail {
            return ResponseTemplate::new(status).set_body_string("partner failure");
        }
        let matching: Vec<&Value> = state
            .records
            .iter()
            .filter(|r| r["updated_at"].as_i64().unwrap_or(0) >= since)
            .collect();
        let page: Vec<Value> = matching
            .iter()
            .skip(offset)
            .take(Lister::PAGE_SIZE)
            .map(|r| (*r).clone())
            .collect();
        let next =
            (offset + Lister::PAGE_SIZE < matching.len()).then_some(offset + Lister::PAGE_SIZE);
        let mut response = ResponseTemplate::new(200);
        let body = match (self.paging, next) {
            (Paging::Cursor, next) => json!({"data": page, "next": next.map(|n| n.to_string())}),
            (Paging::Link, Some(next)) => {
                let link = format!(
                    "<{}{prefix}/v1/orders?since={since}&offset={next}>; rel=\"next\"",
                    self.base
                );
                response = response.insert_header("Link", link.as_str());
                json!({"data": page})
            }
            (Paging::Link, None) => json!({"data": page}),
        };
        let delay = match state.hold {
            Some((held, delay)) if held == offset => Some(delay),
            _ => state.delay,
        };
        response = response.set_body_json(body);
        match delay {
            Some(delay) => response.set_delay(delay),
            None => response,
        }
    }
}
