//! What reaches the partner and what comes back: paths, headers, bodies, statuses, redirects.

use tonic::Code;
use wiremock::{Mock, ResponseTemplate, matchers};

use crate::{call, header, partner_and_services, received};

#[tokio::test]
async fn method_body_and_headers_go_out_and_the_whole_response_comes_back() {
    let (partner, services) = partner_and_services().await;
    Mock::given(matchers::method("PUT"))
        .and(matchers::path("/orders/7"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("x-partner", "p-1")
                .set_body_string("created"),
        )
        .mount(&partner)
        .await;

    let mut request = call("open", "PUT", "/orders/7");
    request.body = b"{\"qty\":3}".to_vec();
    request.headers = vec![header("Content-Type", "application/json")];
    let response = services.call(request).await.expect("call");

    assert_eq!(response.status, 201);
    assert_eq!(response.body, b"created");
    assert!(
        response
            .headers
            .iter()
            .any(|h| h.name == "x-partner" && h.value == "p-1")
    );
    let requests = received(&partner).await;
    assert_eq!(requests[0].body, b"{\"qty\":3}");
    assert_eq!(
        requests[0].headers.get("content-type").expect("kept"),
        "application/json"
    );
}

#[tokio::test]
async fn idempotency_key_is_sent_and_wins_over_a_caller_header() {
    let (partner, services) = partner_and_services().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;

    let mut request = call("open", "POST", "/orders");
    request.idempotency_key = "evt-1:orders".to_owned();
    request.headers = vec![header("Idempotency-Key", "forged")];
    services.call(request).await.expect("call");

    let requests = received(&partner).await;
    let keys: Vec<_> = requests[0]
        .headers
        .get_all("idempotency-key")
        .iter()
        .collect();
    assert_eq!(keys, ["evt-1:orders"]);
}

#[tokio::test]
async fn partner_error_status_is_a_successful_call() {
    let (partner, services) = partner_and_services().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(500).set_body_string("busy"))
        .mount(&partner)
        .await;

    // 500 is not a status that is retried (see `retries.rs` for those).
    let response = services
        .call(call("open", "GET", "/x"))
        .await
        .expect("call");
    assert_eq!(response.status, 500);
    assert_eq!(response.attempts, 1);
    assert_eq!(response.body, b"busy");
}

#[tokio::test]
async fn redirects_are_returned_not_followed() {
    let (partner, services) = partner_and_services().await;
    Mock::given(matchers::path("/moved"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/elsewhere", partner.uri())),
        )
        .mount(&partner)
        .await;
    Mock::given(matchers::path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;

    let response = services
        .call(call("open", "GET", "/moved"))
        .await
        .expect("call");
    assert_eq!(response.status, 302);
    assert_eq!(received(&partner).await.len(), 1);
}

#[tokio::test]
async fn paths_and_headers_that_could_escape_the_connection_are_invalid_arguments() {
    let (partner, services) = partner_and_services().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;

    for path in [
        "//evil.example/x",
        "http://evil/",
        "evil.example/x",
        "@evil.example/x",
        "/@evil.example",
        "/\\evil.example",
        "/x#fragment",
        "/x y",
        "",
    ] {
        let status = services
            .call(call("open", "GET", path))
            .await
            .expect_err(path);
        assert_eq!(status.code(), Code::InvalidArgument, "{path:?}");
    }

    let mut injected = call("open", "GET", "/x");
    injected.headers = vec![header("X-Note", "a\r\nX-Evil: 1")];
    let mut bad_name = call("open", "GET", "/x");
    bad_name.headers = vec![header("Bad Name", "v")];
    let mut bad_key = call("open", "GET", "/x");
    bad_key.idempotency_key = "k\r\nX-Evil: 1".to_owned();
    for request in [
        injected,
        bad_name,
        bad_key,
        call("open", "TRACE", "/x"),
        call("open", "get", "/x"),
    ] {
        let status = services.call(request).await.expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
    }

    assert!(received(&partner).await.is_empty());
}

#[tokio::test]
async fn dot_segments_in_any_spelling_are_invalid_and_never_sent() {
    let (partner, services) = partner_and_services().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;

    for path in [
        "/../x",
        "/a/..",
        "/%2e%2e/x",
        "/%2E./x",
        "/.%2e/x",
        "/a/..%2F..%2Fx",
        "/a/%",
    ] {
        let status = services
            .call(call("basic", "GET", path))
            .await
            .expect_err(path);
        assert_eq!(status.code(), Code::InvalidArgument, "{path:?}");
        assert!(status.message().contains("invalid path"), "{path:?}");
    }
    assert!(received(&partner).await.is_empty());
}
