//! Refused requests: the status each gets, and that none of them is stored.

use std::time::Duration;

use hookyard_testkit::Nats;
use reqwest::header::{ALLOW, AUTHORIZATION, WWW_AUTHENTICATE};

use crate::harness::{self, LIMIT, OPEN, PASSWORD, SHOP, USER, raw_status};

#[tokio::test]
async fn bad_credentials_get_401_with_a_challenge_and_nothing_is_stored() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, Duration::from_secs(5)).await?;
    let request = || ingress.http.post(ingress.url(SHOP)).body("{}");
    let cases = [
        (
            "wrong password",
            request().basic_auth(USER, Some("pa:ss wore")),
        ),
        ("password prefix", request().basic_auth(USER, Some("pa"))),
        ("wrong user", request().basic_auth("shop2", Some(PASSWORD))),
        ("missing header", request()),
        ("bad base64", request().header(AUTHORIZATION, "Basic !!!")),
        (
            "no colon",
            request().header(AUTHORIZATION, "Basic c2hvcA=="),
        ),
        (
            "wrong scheme",
            request().header(AUTHORIZATION, "Bearer c2hvcA=="),
        ),
        ("empty", request().header(AUTHORIZATION, "")),
    ];
    for (case, builder) in cases {
        let response = builder.send().await?;
        assert_eq!(response.status().as_u16(), 401, "{case}");
        assert_eq!(
            response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            Some("Basic realm=\"hookyard\""),
            "{case}"
        );
    }
    assert_eq!(ingress.stored().await?, 0);
    ingress.stop().await
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_declared_or_streamed_and_nothing_is_stored()
-> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, Duration::from_secs(5)).await?;

    let response = ingress.post_open(vec![b'x'; LIMIT + 1]).await?;
    assert_eq!(response.status().as_u16(), 413);

    // A huge declared length is refused without a byte of body being sent.
    let declared = format!("POST {OPEN} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n");
    assert_eq!(raw_status(ingress.addr, declared.as_bytes()).await?, 413);

    // A chunked body without Content-Length is refused as soon as it passes the limit: the
    // request is never finished, so an answer proves ingress did not wait for the rest.
    let mut chunked =
        format!("POST {OPEN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n", LIMIT / 2).as_bytes());
        chunked.extend_from_slice(&vec![b'y'; LIMIT / 2]);
        chunked.extend_from_slice(b"\r\n");
    }
    assert_eq!(raw_status(ingress.addr, &chunked).await?, 413);

    // Authenticated sources check credentials before the length.
    let unauthenticated =
        format!("POST {SHOP} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n");
    assert_eq!(
        raw_status(ingress.addr, unauthenticated.as_bytes()).await?,
        401
    );

    assert_eq!(ingress.stored().await?, 0);
    ingress.stop().await
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_is_405_with_allow() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, Duration::from_secs(5)).await?;

    let missing = ingress.http.post(ingress.url("/hooks/nope")).send().await?;
    assert_eq!(missing.status().as_u16(), 404);
    let trailing = ingress
        .http
        .post(ingress.url("/hooks/open/"))
        .send()
        .await?;
    assert_eq!(trailing.status().as_u16(), 404);

    let wrong = ingress.http.get(ingress.url(OPEN)).send().await?;
    assert_eq!(wrong.status().as_u16(), 405);
    let allow = wrong
        .headers()
        .get(ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    methods.sort_unstable();
    assert_eq!(methods, ["POST", "PUT"]);

    assert_eq!(ingress.stored().await?, 0);
    ingress.stop().await
}
