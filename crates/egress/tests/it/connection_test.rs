//! `TestConnection`: one request through the real connection, its answer or its failure.

use hookyard_proto::egress::v1::TestConnectionRequest;
use tonic::Code;
use wiremock::{Mock, ResponseTemplate, matchers};

use crate::{QUERY_KEY, partner_and_services, received};

fn test(connection: &str, method: &str, path: &str) -> TestConnectionRequest {
    TestConnectionRequest {
        connection: connection.to_owned(),
        method: method.to_owned(),
        path: path.to_owned(),
        ..TestConnectionRequest::default()
    }
}

#[tokio::test]
async fn a_test_sends_one_request_and_reports_status_headers_and_an_excerpt() {
    let (partner, services) = partner_and_services().await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/"))
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("x-partner", "p-1")
                .set_body_string("x".repeat(5000)),
        )
        .mount(&partner)
        .await;

    let response = services
        .egress
        .clone()
        .test_connection(test("query", "", ""))
        .await
        .expect("tested")
        .into_inner();
    assert_eq!(response.status, 503);
    assert!(response.headers.iter().any(|h| h.name == "x-partner"));
    assert_eq!(response.body_excerpt.len(), 2048);
    assert!(response.truncated);
    assert!(response.error_code.is_empty());
    let requests = received(&partner).await;
    assert_eq!(requests.len(), 1, "a test is never retried");
    assert_eq!(requests[0].url.path(), "/");
    assert!(!format!("{response:?}").contains(QUERY_KEY));
}

#[tokio::test]
async fn a_test_carries_the_callers_headers_and_body_but_not_their_credentials() {
    let (partner, services) = partner_and_services().await;
    Mock::given(matchers::method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&partner)
        .await;
    let header = |name: &str, value: &str| hookyard_proto::egress::v1::Header {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    let mut request = test("query", "POST", "/v1/probe");
    request.headers = vec![
        header("x-probe", "1"),
        header("content-type", "application/json"),
        header("authorization", "Bearer caller-made-up"),
    ];
    request.body = br#"{"probe":true}"#.to_vec();

    let response = services
        .egress
        .clone()
        .test_connection(request)
        .await
        .expect("tested")
        .into_inner();
    assert_eq!(response.status, 202);
    let requests = received(&partner).await;
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.body, br#"{"probe":true}"#);
    assert_eq!(
        sent.headers.get("x-probe").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert!(
        sent.headers.get("authorization").is_none(),
        "reserved headers are dropped"
    );
}

#[tokio::test]
async fn a_failed_test_reports_the_error_in_the_response() {
    let (_partner, services) = partner_and_services().await;

    let response = services
        .egress
        .clone()
        .test_connection(test("down-query", "HEAD", "/health"))
        .await
        .expect("tested")
        .into_inner();
    assert_eq!(response.status, 0);
    assert_eq!(response.error_code, "Unavailable");
    assert!(!response.error.is_empty());
    assert!(!format!("{response:?}").contains(QUERY_KEY));

    let status = services
        .egress
        .clone()
        .test_connection(test("nope", "GET", "/"))
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);
}
