//! Ingress refuses what it must (401, 413 with nothing published, 404, 405), and
//! while NATS is down it answers 503 with `Retry-After`, never 2xx; once NATS is back it answers
//! 202 again, and every event it acknowledged is delivered to the partner.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::harness::*;

const ORDERS: &str = r#"
[[routes]]
event = "*"
handlers = ["orders"]

[handlers.orders]
max_deliver = 20
backoff = ["200ms", "500ms", "1s"]
concurrency = 32

[[handlers.orders.steps]]
type = "http"
connection = "erp"
path = "/v1/orders"
"#;

async fn started() -> anyhow::Result<(Stack, MockServer, MockServer)> {
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(201))
        .mount(&partner)
        .await;
    let stack = Stack::start(&shop_config(&partner.uri(), &auth.uri(), ORDERS)).await?;
    Ok((stack, partner, auth))
}

#[tokio::test]
async fn bad_requests_are_refused_and_nothing_is_published() -> anyhow::Result<()> {
    let (stack, _partner, _auth) = started().await?;
    let url = format!("{}/hooks/shop", stack.ingress);
    let http = stack.http();
    let body = json!({"order": {"id": 1}}).to_string();

    let wrong_password = http
        .post(&url)
        .basic_auth(SHOP_USER, Some("wrong"))
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(wrong_password.status(), 401);
    let no_credentials = http.post(&url).body(body.clone()).send().await?;
    assert_eq!(no_credentials.status(), 401);

    let oversized = http
        .post(&url)
        .basic_auth(SHOP_USER, Some(SHOP_PASSWORD))
        .body(vec![b'x'; 65537])
        .send()
        .await?;
    assert_eq!(oversized.status(), 413);

    let unknown = http
        .post(format!("{}/hooks/nope", stack.ingress))
        .basic_auth(SHOP_USER, Some(SHOP_PASSWORD))
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(unknown.status(), 404);

    let wrong_method = http
        .get(&url)
        .basic_auth(SHOP_USER, Some(SHOP_PASSWORD))
        .send()
        .await?;
    assert_eq!(wrong_method.status(), 405);

    assert_eq!(
        stack.stream_len(&stack.topology.in_stream()).await?,
        0,
        "nothing published"
    );

    // The same stack still accepts a good request: the refusals did not disturb it.
    stack
        .accepted("order.created", "ok-1", &json!({"order": {"id": 1}}))
        .await?;
    assert_eq!(stack.stream_len(&stack.topology.in_stream()).await?, 1);
    stack.stop().await;
    Ok(())
}

#[derive(Default)]
struct Tally {
    accepted: Vec<String>,
    unavailable: usize,
    unavailable_without_retry_after: usize,
    other: Vec<String>,
}

enum Answer {
    Accepted(String),
    Unavailable { retry_after: bool },
    Other(String),
}

impl Tally {
    fn record(&mut self, answer: Answer) {
        match answer {
            Answer::Accepted(id) => self.accepted.push(id),
            Answer::Unavailable { retry_after } => {
                self.unavailable += 1;
                if !retry_after {
                    self.unavailable_without_retry_after += 1;
                }
            }
            Answer::Other(what) => self.other.push(what),
        }
    }
}

#[tokio::test]
async fn nats_outage_gives_503_then_202_and_loses_no_acknowledged_event() -> anyhow::Result<()> {
    let (stack, partner, _auth) = started().await?;
    let stack = Arc::new(stack);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));

    // One sender, bounded in count and time, recording every answer.
    let sender = {
        let (stack, tally, stop) = (stack.clone(), tally.clone(), stop.clone());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            for n in 0..5000u32 {
                if stop.load(Ordering::Relaxed) || tokio::time::Instant::now() > deadline {
                    break;
                }
                let body = json!({"order": {"id": n}});
                let outcome = stack
                    .send("/hooks/shop", "order.created", &format!("out-{n}"), &body)
                    .await;
                let answer = match outcome {
                    Ok(r) if r.status() == 202 => {
                        let id = r
                            .json::<serde_json::Value>()
                            .await
                            .ok()
                            .and_then(|v| v["id"].as_str().map(str::to_owned));
                        match id {
                            Some(id) => Answer::Accepted(id),
                            None => Answer::Other("202 without id".into()),
                        }
                    }
                    Ok(r) if r.status() == 503 => Answer::Unavailable {
                        retry_after: r.headers().get("retry-after").is_some(),
                    },
                    Ok(r) => Answer::Other(r.status().to_string()),
                    Err(e) => Answer::Other(format!("transport: {e}")),
                };
                let unavailable = matches!(answer, Answer::Unavailable { .. });
                tally.lock().expect("tally").record(answer);
                if unavailable {
                    // Pause briefly between refused attempts, as a sender honouring Retry-After would.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
    };

    let accepted = |t: &Arc<Mutex<Tally>>| t.lock().map(|t| t.accepted.len()).unwrap_or(0);
    let unavailable = |t: &Arc<Mutex<Tally>>| t.lock().map(|t| t.unavailable).unwrap_or(0);

    hookyard_testkit::wait_for(PATIENCE, "10 accepted before the outage", || async {
        accepted(&tally) >= 10
    })
    .await?;
    stack.nats.stop().await?;
    hookyard_testkit::wait_for(PATIENCE, "503s during the outage", || async {
        unavailable(&tally) >= 3
    })
    .await?;
    let before_restart = accepted(&tally);
    stack.nats.restart().await?;
    hookyard_testkit::wait_for(Duration::from_secs(60), "202s after the outage", || async {
        accepted(&tally) >= before_restart + 10
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    sender.await?;

    let tally = Arc::try_unwrap(tally)
        .map_err(|_| anyhow::anyhow!("sender still holds the tally"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("tally poisoned"))?;
    assert!(
        tally.other.is_empty(),
        "only 202 or 503 expected: {:?}",
        tally.other
    );
    assert_eq!(
        tally.unavailable_without_retry_after, 0,
        "every 503 carries Retry-After"
    );
    assert!(tally.unavailable > 0);

    // Every acknowledged event reaches the partner.
    let expected: std::collections::HashSet<String> = tally
        .accepted
        .iter()
        .map(|id| format!("{id}:orders"))
        .collect();
    let delivered_keys = || async {
        requests_to(&partner, "/v1/orders")
            .await
            .iter()
            .filter_map(|r| header(r, "idempotency-key"))
            .collect::<std::collections::HashSet<String>>()
    };
    let all_delivered = hookyard_testkit::wait_for(
        Duration::from_secs(90),
        "every accepted event delivered",
        || async { expected.is_subset(&delivered_keys().await) },
    )
    .await;
    let delivered = delivered_keys().await;
    let lost = expected.difference(&delivered).count();
    assert!(
        all_delivered.is_ok() && lost == 0,
        "{lost} of {} acknowledged events not delivered",
        expected.len()
    );
    eprintln!(
        "outage: accepted={} unavailable={} delivered={} lost=0",
        expected.len(),
        tally.unavailable,
        delivered.len()
    );
    if let Ok(stack) = Arc::try_unwrap(stack) {
        stack.stop().await;
    }
    Ok(())
}
