//! The token service reaches a connection's authorization server as egress reaches its
//! partner: with the connection's TLS settings (trusted CA, client certificate) and behind the
//! SSRF guard, so a token URL on a private or metadata address is refused unless the connection
//! allows it, and a name resolving to one gets no request at all.

use std::{path::Path, sync::Arc, sync::atomic::Ordering};

use hookyard_core::Integration;
use hookyard_testkit::tls::{Ca, ExtendedKeyUsagePurpose, mtls_server};
use wiremock::MockServer;

use crate::{CLIENT_SECRET, TokenService, authorization_server, token_requests};

/// A token endpoint's answer, as raw HTTP.
const TOKEN: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 68\r\nconnection: close\r\n\r\n{\"access_token\":\"tls-token\",\"token_type\":\"Bearer\",\"expires_in\":3600}";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

fn connection(name: &str, token_url: &str, extra: &str) -> String {
    format!(
        "[connections.{name}]\nbase_url = \"https://{name}.example\"\n{extra}\nauth = {{ type = \"oauth2_client_credentials\", token_url = \"{token_url}\", client_id = \"hookyard\", client_secret = \"${{env:ERP_SECRET}}\" }}\n"
    )
}

#[tokio::test]
async fn token_requests_present_the_connections_client_certificate_to_its_ca() {
    let ca = Ca::new("authorization server ca");
    let (_, server_der, server_key) = ca.issue(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let (client_pem, _, client_key) = ca.issue(&["hookyard"], ExtendedKeyUsagePurpose::ClientAuth);
    let (port, served) = mtls_server((server_der, server_key), ca.der.clone(), TOKEN).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);
    let cert_file = write(dir.path(), "client.pem", &client_pem);
    let key_file = write(dir.path(), "client-key.pem", &client_key.serialize_pem());
    let url = format!("https://127.0.0.1:{port}/token");
    let allow = "allow_private = [\"127.0.0.0/8\"]";
    let config = [
        connection(
            "mtls",
            &url,
            &format!(
                "{allow}\ntls = {{ ca = \"{ca_file}\", ca_mode = \"replace\", client_cert = \"{cert_file}\", client_key = \"${{file:{key_file}}}\" }}"
            ),
        ),
        connection(
            "no-cert",
            &url,
            &format!("{allow}\ntls = {{ ca = \"{ca_file}\", ca_mode = \"replace\" }}"),
        ),
        connection("built-in-roots", &url, allow),
    ]
    .concat();
    let service = TokenService::spawn(&config).await;

    let token = service.get("mtls").await.expect("a token over mutual TLS");
    assert_eq!(token.access_token, "tls-token");
    for name in ["no-cert", "built-in-roots"] {
        let status = service.get(name).await.expect_err(name);
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "{name}: {status:?}"
        );
    }
    assert_eq!(served.load(Ordering::SeqCst), 1, "one exchange completed");
}

#[tokio::test]
async fn a_token_url_on_a_refused_address_fails_at_start_naming_the_connection() {
    let env = |name: &str| (name == "ERP_SECRET").then(|| CLIENT_SECRET.to_owned());
    for (url, extra) in [
        ("http://127.0.0.1:9/token", ""),
        ("http://10.1.2.3/token", ""),
        // A metadata address is refused even when its range is allowed.
        (
            "http://169.254.169.254/token",
            "allow_private = [\"169.254.0.0/16\"]",
        ),
    ] {
        let integration =
            Integration::parse(&connection("erp", url, extra), &env).expect("valid file");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let settings = hookyard_token::Settings {
            integration: Arc::new(integration),
            store: None,
            reload: None,
        };
        let error = hookyard_token::run(settings, listener, Default::default())
            .await
            .expect_err(url);
        let text = error.to_string();
        assert!(
            matches!(error, hookyard_token::Error::TokenUrlRefused { .. })
                && text.contains("connection erp")
                && text.contains("SSRF guard"),
            "{url}: {text}"
        );
    }
}

#[tokio::test]
async fn a_token_url_whose_name_resolves_to_loopback_gets_no_request() {
    let server: MockServer = authorization_server("tok", std::time::Duration::ZERO).await;
    let port = server.address().port();
    let refused = connection("erp", &format!("http://localhost:{port}/token"), "");
    let allowed = connection(
        "allowed",
        &format!("http://localhost:{port}/token"),
        "allow_private = [\"127.0.0.0/8\", \"::1/128\"]",
    );
    let service = TokenService::spawn(&format!("{refused}{allowed}")).await;

    let status = service.get("erp").await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(token_requests(&server).await, 0, "no request left");
    assert_eq!(
        service.get("allowed").await.expect("allowed").access_token,
        "tok"
    );
    assert_eq!(token_requests(&server).await, 1);
}
