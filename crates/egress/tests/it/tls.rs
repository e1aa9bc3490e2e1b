//! TLS per connection against a loopback TLS server that requires a client certificate, with
//! certificates generated here: the configured CA replaces or extends the built-in roots, the
//! client certificate is presented, and a server the CA did not sign is refused.

use std::{path::Path, sync::atomic::Ordering};

use hookyard_testkit::tls::{Ca, ExtendedKeyUsagePurpose, mtls_server};
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::{call, egress, integration};

/// What the test server answers every exchange.
const MTLS_OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nmtls ok";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate_and_the_configured_ca() {
    let ca = Ca::new("hookyard test ca");
    let other = Ca::new("some other ca");
    let (_, server_der, server_key) = ca.issue(
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_pem, _, client_key) = ca.issue(&["hookyard"], ExtendedKeyUsagePurpose::ClientAuth);
    let (port, served) = mtls_server((server_der, server_key), ca.der.clone(), MTLS_OK).await;

    let dir = tempfile::tempdir().expect("dir");
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);
    let other_file = write(dir.path(), "other-ca.pem", &other.pem);
    let cert_file = write(dir.path(), "client.pem", &client_pem);
    let key_file = write(dir.path(), "client-key.pem", &client_key.serialize_pem());
    let base =
        format!("base_url = \"https://127.0.0.1:{port}\"\nallow_private = [\"127.0.0.0/8\"]");
    let identity = format!("client_cert = \"{cert_file}\", client_key = \"${{file:{key_file}}}\"");
    let services = egress(&format!(
        r#"
[connections.mtls]
{base}
tls = {{ ca = "{ca_file}", ca_mode = "replace", {identity} }}

[connections.extend]
{base}
tls = {{ ca = "{ca_file}", {identity} }}

[connections.no-cert]
{base}
tls = {{ ca = "{ca_file}", ca_mode = "replace" }}

[connections.wrong-ca]
{base}
tls = {{ ca = "{other_file}", ca_mode = "replace", {identity} }}

[connections.built-in-roots]
{base}
tls = {{ {identity} }}
"#
    ))
    .await;

    for name in ["mtls", "extend"] {
        let response = services.call(call(name, "GET", "/x")).await.expect(name);
        assert_eq!(response.status, 200, "{name}");
        assert_eq!(response.body, b"mtls ok", "{name}");
    }
    assert_eq!(served.load(Ordering::SeqCst), 2);

    for name in ["no-cert", "wrong-ca", "built-in-roots"] {
        let status = services
            .call(call(name, "GET", "/x"))
            .await
            .expect_err(name);
        assert_eq!(status.code(), Code::Unavailable, "{name}: {status:?}");
    }
    assert_eq!(
        served.load(Ordering::SeqCst),
        2,
        "no other exchange completed"
    );
}

#[tokio::test]
async fn an_unreadable_ca_or_a_bad_key_fails_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let cert_file = write(dir.path(), "client.pem", "not a certificate");
    let key_file = write(dir.path(), "client-key.pem", "not a key");
    for tls in [
        format!("{{ ca = \"{}/missing.pem\" }}", dir.path().display()),
        format!("{{ client_cert = \"{cert_file}\", client_key = \"${{file:{key_file}}}\" }}"),
    ] {
        let config =
            format!("[connections.c]\nbase_url = \"https://partner.example\"\ntls = {tls}\n");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let settings = hookyard_egress::Settings {
            integration: integration(&config),
            token_endpoint: None,
            reload: None,
            audit: None,
        };
        let result = hookyard_egress::run(settings, listener, CancellationToken::new()).await;
        assert!(
            matches!(result, Err(hookyard_egress::Error::Tls { .. })),
            "{tls}: {result:?}"
        );
    }
}
