//! TLS per connection against a loopback TLS server that requires a client certificate, with
//! certificates generated here: the configured CA replaces or extends the built-in roots, the
//! client certificate is presented, and a server the CA did not sign is refused.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        RootCertStore, ServerConfig,
        crypto::ring,
        pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
        server::WebPkiClientVerifier,
    },
};
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::{call, egress, integration};

/// A CA: its certificate (PEM and DER) and what signs with it.
struct Ca {
    pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed");
        Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names` with `usage`: (certificate PEM, DER, key).
    fn issue(
        &self,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (String, CertificateDer<'static>, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, "leaf");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), cert.der().clone(), key)
    }
}

/// A TLS server on 127.0.0.1 that requires a client certificate signed by `client_ca` and
/// answers every request `200 mtls ok`; counts the exchanges it completed.
async fn mtls_server(
    server: (CertificateDer<'static>, KeyPair),
    client_ca: CertificateDer<'static>,
) -> (u16, Arc<AtomicUsize>) {
    let provider = Arc::new(ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(client_ca).expect("client ca");
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("verifier");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.1.serialize_der()));
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.0], key)
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer =
                    b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nmtls ok";
                if tls.write_all(answer).await.is_ok() && tls.shutdown().await.is_ok() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (port, served)
}

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
    let (port, served) = mtls_server((server_der, server_key), ca.der.clone()).await;

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
