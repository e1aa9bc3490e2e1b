//! Retries, `Retry-After`, the rate and concurrency limits, and the circuit breaker.

use std::time::{Duration, Instant};

use tonic::Code;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::{call, egress, received};

fn config(partner: &MockServer, extra: &str) -> String {
    format!(
        r#"
[connections.p]
base_url = "{}"
allow_private = ["127.0.0.0/8"]
retry = {{ initial_backoff = "10ms", max_backoff = "50ms", max_retry_after = "5s" }}
{extra}
"#,
        partner.uri()
    )
}

/// A partner answering `first` `times` times, then 200.
async fn partner(first: ResponseTemplate, times: u64) -> MockServer {
    let partner = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(first)
        .up_to_n_times(times)
        .with_priority(1)
        .mount(&partner)
        .await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&partner)
        .await;
    partner
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_the_wait() {
    let partner = partner(
        ResponseTemplate::new(429).insert_header("retry-after", "2"),
        1,
    )
    .await;
    let services = egress(&config(&partner, "")).await;

    let started = Instant::now();
    let response = services.call(call("p", "GET", "/x")).await.expect("call");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.attempts, 2);
    assert_eq!(received(&partner).await.len(), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_returns_the_response() {
    let partner = partner(
        ResponseTemplate::new(503).insert_header("retry-after", "3600"),
        1,
    )
    .await;
    let services = egress(&config(&partner, "")).await;

    let response = services.call(call("p", "GET", "/x")).await.expect("call");
    assert_eq!(response.status, 503);
    assert_eq!(response.attempts, 1);
}

#[tokio::test]
async fn idempotent_requests_are_retried_on_5xx_up_to_max_attempts() {
    let partner = partner(ResponseTemplate::new(502), 10).await;
    let services = egress(&config(&partner, "")).await;

    let response = services.call(call("p", "PUT", "/x")).await.expect("call");
    assert_eq!(response.status, 502);
    assert_eq!(response.attempts, 3, "the default max_attempts");
    assert_eq!(received(&partner).await.len(), 3);
}

#[tokio::test]
async fn post_is_retried_only_with_an_idempotency_key() {
    let partner = partner(ResponseTemplate::new(503), 1).await;
    let services = egress(&config(&partner, "")).await;

    let response = services.call(call("p", "POST", "/x")).await.expect("call");
    assert_eq!(response.status, 503);
    assert_eq!(response.attempts, 1);
    assert_eq!(
        received(&partner).await.len(),
        1,
        "the partner saw one request"
    );

    partner.reset().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&partner)
        .await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(201))
        .with_priority(2)
        .mount(&partner)
        .await;
    let mut keyed = call("p", "POST", "/x");
    keyed.idempotency_key = "evt-9:orders".to_owned();
    let response = services.call(keyed).await.expect("call");
    assert_eq!(response.status, 201);
    assert_eq!(response.attempts, 2);
}

#[tokio::test]
async fn a_broken_connection_of_an_idempotent_request_is_retried() {
    // The first connection is closed without an answer, the second gets a 200.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        let (first, _) = listener.accept().await.expect("accept");
        drop(first);
        let (mut second, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::io::AsyncReadExt::read(&mut second, &mut buf)
                .await
                .expect("read");
            if n == 0 {
                return;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
        tokio::io::AsyncWriteExt::write_all(&mut second, answer)
            .await
            .expect("write");
    });
    let services = egress(&format!(
        r#"
[connections.flaky]
base_url = "http://127.0.0.1:{port}"
allow_private = ["127.0.0.0/8"]
retry = {{ initial_backoff = "10ms" }}
"#
    ))
    .await;

    let response = services
        .call(call("flaky", "GET", "/x"))
        .await
        .expect("call");
    assert_eq!(response.status, 200);
    assert_eq!(response.attempts, 2);
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures_and_recovers() {
    let partner = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .mount(&partner)
        .await;
    let services = egress(&config(
        &partner,
        r#"breaker = { failures = 2, cool_down = "300ms" }"#,
    ))
    .await;

    for _ in 0..2 {
        let response = services.call(call("p", "GET", "/x")).await.expect("call");
        assert_eq!(response.status, 500);
    }
    let status = services
        .call(call("p", "GET", "/x"))
        .await
        .expect_err("open");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        received(&partner).await.len(),
        2,
        "rejected without a request"
    );

    // The partner recovers; after the cool-down one probe goes through and closes the breaker.
    partner.reset().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;
    hookyard_testkit::wait_for(Duration::from_secs(5), "breaker closed", || async {
        services
            .call(call("p", "GET", "/x"))
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await
    .expect("recovers");
    for _ in 0..3 {
        let response = services.call(call("p", "GET", "/x")).await.expect("closed");
        assert_eq!(response.status, 200);
    }
}

#[tokio::test]
async fn calls_over_the_rate_limit_wait() {
    let partner = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;
    let services = egress(&config(
        &partner,
        "rate_limit = { per_second = 10, burst = 1 }",
    ))
    .await;

    let started = Instant::now();
    for _ in 0..4 {
        services.call(call("p", "GET", "/x")).await.expect("call");
    }
    // One at once, then one every 100 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn calls_over_the_concurrency_limit_wait_for_a_slot() {
    let partner = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&partner)
        .await;
    let services = egress(&config(&partner, "max_concurrency = 1")).await;

    let started = Instant::now();
    let (a, b) = tokio::join!(
        services.call(call("p", "GET", "/a")),
        services.call(call("p", "GET", "/b"))
    );
    a.expect("a");
    b.expect("b");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
}
