//! The SSRF guard through the real service: literal addresses and names resolving to refused
//! addresses are PERMISSION_DENIED before anything is sent, an allowed range works, and
//! redirects are followed only when allowed and never to a refused address.

use tonic::Code;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::{call, closed_port, egress, received};

/// Literal hosts of every refused class, as they appear in a URL.
const REFUSED_HOSTS: &[&str] = &[
    "0.0.0.0",
    "127.0.0.1",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "192.0.2.1",
    "224.0.0.1",
    "255.255.255.255",
    "240.0.0.1",
    "[::]",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:169.254.169.254]",
    "[::127.0.0.1]",
    "[64:ff9b::7f00:1]",
    "[2002:a9fe:a9fe::1]",
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",
    "[fd00:ec2::254]",
    "[fc00::1]",
    "[fe80::1]",
    "[ff02::1]",
    "[2001:db8::1]",
];

#[tokio::test]
async fn literal_refused_addresses_are_permission_denied() {
    let port = closed_port();
    let config: String = REFUSED_HOSTS
        .iter()
        .enumerate()
        .map(|(n, host)| format!("[connections.c{n}]\nbase_url = \"http://{host}:{port}\"\n"))
        .collect();
    let services = egress(&config).await;

    for (n, host) in REFUSED_HOSTS.iter().enumerate() {
        let status = services
            .call(call(&format!("c{n}"), "GET", "/latest/meta-data"))
            .await
            .expect_err(host);
        assert_eq!(status.code(), Code::PermissionDenied, "{host}: {status:?}");
    }
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_unless_its_range_is_allowed() {
    let partner = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;
    let port = partner.address().port();
    let services = egress(&format!(
        r#"
[connections.guarded]
base_url = "http://localhost:{port}"

[connections.allowed]
base_url = "http://localhost:{port}"
allow_private = ["127.0.0.0/8", "::1"]
"#
    ))
    .await;

    let status = services
        .call(call("guarded", "GET", "/x"))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(received(&partner).await.is_empty(), "nothing was sent");

    let response = services
        .call(call("allowed", "GET", "/x"))
        .await
        .expect("allowed");
    assert_eq!(response.status, 200);
    assert_eq!(received(&partner).await.len(), 1);
}

/// A partner that redirects `/moved` to `location` and answers 200 on `/here`.
async fn redirecting_partner(location: &str) -> MockServer {
    let partner = MockServer::start().await;
    let location = location.replace("{partner}", &partner.uri());
    Mock::given(matchers::path("/moved"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", location.as_str()))
        .mount(&partner)
        .await;
    Mock::given(matchers::path("/twice"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/moved"))
        .mount(&partner)
        .await;
    Mock::given(matchers::path("/here"))
        .respond_with(ResponseTemplate::new(200).set_body_string("here"))
        .mount(&partner)
        .await;
    partner
}

fn redirect_config(partner: &MockServer, hops: u32) -> String {
    format!(
        r#"
[connections.follow]
base_url = "{}"
allow_private = ["127.0.0.0/8"]
follow_redirects = {hops}
"#,
        partner.uri()
    )
}

#[tokio::test]
async fn allowed_redirects_are_followed_up_to_the_hop_limit() {
    let partner = redirecting_partner("{partner}/here").await;
    let services = egress(&redirect_config(&partner, 1)).await;

    let response = services
        .call(call("follow", "GET", "/moved"))
        .await
        .expect("followed");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"here");

    // Two hops with a limit of one: the second 3xx comes back as it is.
    let response = services
        .call(call("follow", "GET", "/twice"))
        .await
        .expect("stopped");
    assert_eq!(response.status, 302);
}

#[tokio::test]
async fn a_redirect_to_the_metadata_address_is_not_followed() {
    for location in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/internal",
    ] {
        let partner = redirecting_partner(location).await;
        let services = egress(&redirect_config(&partner, 5)).await;

        let status = services
            .call(call("follow", "GET", "/moved"))
            .await
            .expect_err(location);
        assert_eq!(status.code(), Code::PermissionDenied, "{location}");
    }
}

#[tokio::test]
async fn a_header_auth_connection_does_not_follow_a_redirect_to_another_host() {
    let elsewhere = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&elsewhere)
        .await;
    let partner = redirecting_partner(&format!("{}/here", elsewhere.uri())).await;
    let services = egress(&format!(
        r#"
[connections.keyed]
base_url = "{}"
allow_private = ["127.0.0.0/8"]
follow_redirects = 3
auth = {{ type = "header", headers = {{ "X-Api-Key" = "${{env:HEADER_KEY}}" }} }}
"#,
        partner.uri()
    ))
    .await;

    let response = services
        .call(call("keyed", "GET", "/moved"))
        .await
        .expect("call");
    assert_eq!(response.status, 302, "the 3xx comes back as it is");
    assert!(received(&elsewhere).await.is_empty(), "the key stayed home");
}
