//! A stand-in OAuth 2.0 authorization server on a loopback port that checks what a real one
//! checks: the registered redirect URI (exactly), PKCE S256, one-time codes, client
//! authentication, valid refresh tokens. Behaviour of refreshes is switchable per test; every
//! token request is recorded. And a "browser" that walks the consent flow hop by hop.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine as _;
use sha2::Digest as _;
use tokio_util::sync::CancellationToken;

pub const CLIENT_ID: &str = "hookyard";
pub const CLIENT_SECRET: &str = "crm-client-secret-0815";

/// What the token endpoint does with a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// New access and refresh tokens; the old refresh token stops working.
    Rotate,
    /// A new access token, no refresh token in the response.
    Omit,
    /// `invalid_grant`: the consent was revoked.
    Revoked,
    /// HTTP 503.
    Down,
}

struct Code {
    challenge: String,
    redirect_uri: String,
    used: bool,
}

struct AsState {
    registered_redirect: String,
    /// `iss` put on the callback, if any.
    callback_iss: Option<String>,
    codes: BTreeMap<String, Code>,
    refresh_tokens: BTreeSet<String>,
    refresh: Refresh,
    expires_in: u64,
    next: u32,
    /// `grant_type` of every token request, in order.
    requests: Vec<String>,
    delay: Duration,
}

/// The running stand-in; stops when dropped.
pub struct AuthServer {
    pub url: String,
    state: Arc<Mutex<AsState>>,
    shutdown: CancellationToken,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl AuthServer {
    /// Starts on 127.0.0.1 port 0, registered with `redirect_uri`; tokens live `expires_in` s.
    pub async fn start(redirect_uri: &str, expires_in: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(Mutex::new(AsState {
            registered_redirect: redirect_uri.to_owned(),
            callback_iss: Some(url.clone()),
            codes: BTreeMap::new(),
            refresh_tokens: BTreeSet::new(),
            refresh: Refresh::Rotate,
            expires_in,
            next: 0,
            requests: Vec::new(),
            delay: Duration::ZERO,
        }));
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(state.clone());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        Self {
            url,
            state,
            shutdown,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut AsState) -> T) -> T {
        f(&mut self.state.lock().expect("as state"))
    }

    pub fn set_refresh(&self, refresh: Refresh) {
        self.with(|s| s.refresh = refresh);
    }
    pub fn set_expires_in(&self, expires_in: u64) {
        self.with(|s| s.expires_in = expires_in);
    }
    pub fn set_callback_iss(&self, iss: Option<&str>) {
        self.with(|s| s.callback_iss = iss.map(str::to_owned));
    }
    pub fn set_delay(&self, delay: Duration) {
        self.with(|s| s.delay = delay);
    }
    /// Token requests of `grant_type` received so far.
    pub fn requests(&self, grant_type: &str) -> usize {
        self.with(|s| s.requests.iter().filter(|g| *g == grant_type).count())
    }
    /// Whether `refresh_token` is currently valid.
    pub fn refresh_valid(&self, refresh_token: &str) -> bool {
        self.with(|s| s.refresh_tokens.contains(refresh_token))
    }
}

fn page(status: StatusCode, text: &str) -> Response {
    (status, format!("<html><body><p>{text}</p></body></html>")).into_response()
}

async fn authorize(
    State(state): State<Arc<Mutex<AsState>>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut s = state.lock().expect("as state");
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    // RFC 6749 §4.1.2.1: a bad client or redirect URI is shown, never redirected to.
    if get("client_id") != CLIENT_ID {
        return page(StatusCode::BAD_REQUEST, "unknown client");
    }
    if get("redirect_uri") != s.registered_redirect {
        return page(StatusCode::BAD_REQUEST, "redirect_uri is not registered");
    }
    let mut back = url::Url::parse(get("redirect_uri")).expect("registered URI parses");
    if get("response_type") != "code"
        || get("code_challenge_method") != "S256"
        || get("code_challenge").len() != 43
    {
        back.query_pairs_mut()
            .append_pair("error", "invalid_request")
            .append_pair("state", get("state"));
        return redirect(back);
    }
    s.next += 1;
    let code = format!("code-{}", s.next);
    s.codes.insert(
        code.clone(),
        Code {
            challenge: get("code_challenge").to_owned(),
            redirect_uri: get("redirect_uri").to_owned(),
            used: false,
        },
    );
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", get("state"));
    if let Some(iss) = &s.callback_iss {
        back.query_pairs_mut().append_pair("iss", iss);
    }
    redirect(back)
}

fn redirect(to: url::Url) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to.to_string())]).into_response()
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": code }))).into_response()
}

async fn token(
    State(state): State<Arc<Mutex<AsState>>>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let delay = state.lock().expect("as state").delay;
    tokio::time::sleep(delay).await;
    let mut s = state.lock().expect("as state");
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    s.requests.push(get("grant_type").to_owned());
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    match get("grant_type") {
        "authorization_code" => {
            let registered = s.registered_redirect.clone();
            let Some(code) = s.codes.get_mut(get("code")) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(get("code_verifier").as_bytes()));
            let valid = !code.used
                && code.challenge == challenge
                && code.redirect_uri == get("redirect_uri")
                && registered == get("redirect_uri");
            code.used = true;
            if !valid {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            issue(&mut s, true)
        }
        "refresh_token" => match s.refresh {
            Refresh::Down => {
                oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
            Refresh::Revoked => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
            _ if !s.refresh_tokens.contains(get("refresh_token")) => {
                oauth_error(StatusCode::BAD_REQUEST, "invalid_grant")
            }
            Refresh::Rotate => {
                s.refresh_tokens.remove(get("refresh_token"));
                issue(&mut s, true)
            }
            Refresh::Omit => issue(&mut s, false),
        },
        "client_credentials" => issue(&mut s, false),
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

fn issue(s: &mut AsState, with_refresh: bool) -> Response {
    s.next += 1;
    let mut body = serde_json::json!({
        "access_token": format!("access-{}", s.next),
        "token_type": "Bearer",
        "expires_in": s.expires_in,
    });
    if with_refresh {
        let refresh = format!("refresh-{}", s.next);
        s.refresh_tokens.insert(refresh.clone());
        body["refresh_token"] = refresh.into();
    }
    axum::Json(body).into_response()
}

/// A browser that does not follow redirects, so each hop is checked.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client")
}

/// The `Location` of a 302, parsed.
pub fn location(response: &reqwest::Response) -> url::Url {
    assert_eq!(
        response.status(),
        reqwest::StatusCode::FOUND,
        "{response:?}"
    );
    let to = response
        .headers()
        .get("location")
        .expect("location")
        .to_str()
        .expect("ascii");
    url::Url::parse(to).expect("absolute URL")
}

pub fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Clicks Connect for `connection`: the URL of the authorization server's page.
pub async fn click_connect(browser: &reqwest::Client, consent: &str, connection: &str) -> url::Url {
    let response = browser
        .get(format!("{consent}/connect/{connection}"))
        .send()
        .await
        .expect("connect");
    location(&response)
}

/// Consents at the authorization server: the callback URL it redirects the browser to.
pub async fn consent_at(browser: &reqwest::Client, authorize: &url::Url) -> url::Url {
    let response = browser
        .get(authorize.clone())
        .send()
        .await
        .expect("authorize");
    location(&response)
}

/// Opens `url`; the status and the page.
pub async fn open(browser: &reqwest::Client, url: &url::Url) -> (u16, String) {
    let response = browser.get(url.clone()).send().await.expect("open");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}
