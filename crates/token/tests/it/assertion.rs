//! `private_key_jwt` client authentication as a real authorization server checks it: the
//! assertion's signature against the registered public key, its claims, a `jti` never seen
//! before; plus `audience` and `extra_params` in the token request.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tonic::Code;

use crate::{TokenService, token_body};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A token endpoint that accepts only assertions signed by `public_pem`.
struct JwtServer {
    url: String,
    /// Forms of the accepted requests.
    accepted: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
}

struct Registered {
    key: DecodingKey,
    alg: Algorithm,
    kid: Option<String>,
    token_url: String,
    seen: Mutex<BTreeSet<String>>,
    accepted: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    jti: String,
    iat: u64,
    exp: u64,
}

fn refuse() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({ "error": "invalid_client" })),
    )
        .into_response()
}

async fn token(
    State(registered): State<Arc<Registered>>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if headers.contains_key("authorization")
        || form.contains_key("client_secret")
        || form.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE)
    {
        return refuse();
    }
    let Some(assertion) = form.get("client_assertion") else {
        return refuse();
    };
    let mut validation = Validation::new(registered.alg);
    validation.set_audience(&[&registered.token_url]);
    validation.set_issuer(&["hookyard"]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud", "jti"]);
    validation.leeway = 0;
    let Ok(data) = jsonwebtoken::decode::<Claims>(assertion, &registered.key, &validation) else {
        return refuse();
    };
    let claims = data.claims;
    let fresh_jti = registered
        .seen
        .lock()
        .expect("seen")
        .insert(claims.jti.clone());
    if claims.sub != "hookyard"
        || claims.iss != "hookyard"
        || claims.exp.saturating_sub(claims.iat) > 300
        || !fresh_jti
        || data.header.kid != registered.kid
        || form.get("client_id").map(String::as_str) != Some("hookyard")
    {
        return refuse();
    }
    registered.accepted.lock().expect("accepted").push(form);
    axum::Json(token_body("jwt-token", Some(3600))).into_response()
}

impl JwtServer {
    async fn start(public_pem: &str, alg: Algorithm, kid: Option<&str>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let key = match alg {
            Algorithm::ES256 => DecodingKey::from_ec_pem(public_pem.as_bytes()),
            _ => DecodingKey::from_rsa_pem(public_pem.as_bytes()),
        }
        .expect("public key");
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let registered = Arc::new(Registered {
            key,
            alg,
            kid: kid.map(str::to_owned),
            token_url: format!("{url}/token"),
            seen: Mutex::new(BTreeSet::new()),
            accepted: accepted.clone(),
        });
        let app = Router::new()
            .route("/token", post(token))
            .with_state(registered);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, accepted }
    }

    fn accepted(&self) -> Vec<BTreeMap<String, String>> {
        self.accepted.lock().expect("accepted").clone()
    }
}

/// A P-256 key pair: private PKCS#8 PEM, public SPKI PEM.
fn ec_key() -> (String, String) {
    let pair = rcgen::KeyPair::generate().expect("key");
    (pair.serialize_pem(), pair.public_key_pem())
}

fn rsa_key() -> (String, String) {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa key");
    let private = key.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string();
    let public = rsa::RsaPublicKey::from(&key)
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    (private, public)
}

/// Connection `erp` using `private_key_jwt` with the key in `key_file`.
fn config(token_url: &str, key_file: &std::path::Path, jwt: &str) -> String {
    format!(
        r#"
[connections.erp]
base_url = "https://erp.example"
allow_private = ["127.0.0.0/8"]
[connections.erp.auth]
type = "oauth2_client_credentials"
token_url = "{token_url}"
client_id = "hookyard"
client_auth = "private_key_jwt"
private_key_jwt = {{ key = "${{file:{}}}", {jwt} }}
scopes = ["orders.read"]
audience = "https://api.erp.example"
extra_params = {{ resource = "https://api.erp.example/orders" }}
"#,
        key_file.display()
    )
}

fn write_key(dir: &tempfile::TempDir, pem: &str) -> std::path::PathBuf {
    let path = dir.path().join("key.pem");
    std::fs::write(&path, pem).expect("write key");
    path
}

#[tokio::test]
async fn es256_assertion_is_verified_with_the_public_key_and_carries_the_claims() {
    let (private, public) = ec_key();
    let server = JwtServer::start(&public, Algorithm::ES256, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = write_key(&dir, &private);
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.url),
        &key,
        r#"alg = "ES256""#,
    ))
    .await;

    assert_eq!(
        service.get("erp").await.expect("token").access_token,
        "jwt-token"
    );
    // A second request carries a new assertion (the server refuses a repeated jti).
    assert!(service.invalidate("erp", "jwt-token").await);
    service.get("erp").await.expect("second token");

    let accepted = server.accepted();
    assert_eq!(accepted.len(), 2);
    let form = &accepted[0];
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], "orders.read");
    assert_eq!(form["audience"], "https://api.erp.example");
    assert_eq!(form["resource"], "https://api.erp.example/orders");
    assert_ne!(
        accepted[0]["client_assertion"],
        accepted[1]["client_assertion"]
    );
}

#[tokio::test]
async fn rs256_assertion_with_key_id_is_verified() {
    let (private, public) = rsa_key();
    let server = JwtServer::start(&public, Algorithm::RS256, Some("erp-2026")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = write_key(&dir, &private);
    let jwt = r#"alg = "RS256", key_id = "erp-2026""#;
    let service = TokenService::spawn(&config(&format!("{}/token", server.url), &key, jwt)).await;

    assert_eq!(
        service.get("erp").await.expect("token").access_token,
        "jwt-token"
    );
    assert_eq!(server.accepted().len(), 1);
}

#[tokio::test]
async fn assertion_signed_with_another_key_is_refused() {
    let (_, registered) = ec_key();
    let (other, _) = ec_key();
    let server = JwtServer::start(&registered, Algorithm::ES256, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = write_key(&dir, &other);
    let service = TokenService::spawn(&config(
        &format!("{}/token", server.url),
        &key,
        r#"alg = "ES256""#,
    ))
    .await;

    let status = service.get("erp").await.expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(server.accepted().is_empty());
}

#[tokio::test]
async fn key_that_does_not_fit_the_algorithm_fails_at_start() {
    let (ec_private, _) = ec_key();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = write_key(&dir, &ec_private);
    let config = config("https://as.example/token", &key, r#"alg = "RS256""#);
    let integration = hookyard_core::Integration::parse(&config, &|_| None).expect("valid file");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let settings = hookyard_token::Settings {
        integration: Arc::new(integration),
        store: None,
        reload: None,
    };
    let error = hookyard_token::run(
        settings,
        listener,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect_err("refused at start");
    assert!(
        matches!(error, hookyard_token::Error::PrivateKey(_)),
        "{error:?}"
    );
    assert!(!format!("{error:?}").contains("PRIVATE KEY"));
}
