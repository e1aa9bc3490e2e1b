//! The connections page: each connection of the integration file with its auth kind and the
//! settings that hold no secret (the base URL without credentials, the token endpoint's host),
//! the Connect link of OAuth 2.0 authorization-code connections on the token service's consent
//! page, and a test request (method, path, headers, body) sent through egress's
//! `TestConnection` with the partner's answer shown (header values that can carry credentials redacted, as `hookyard connection test`
//! does).

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Form,
    extract::rejection::FormRejection,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use hookyard_core::config::{Connection, ConnectionAuth};
use hookyard_proto::{
    egress::v1::{
        Header, TestConnectionRequest, TestConnectionResponse,
        egress_service_client::EgressServiceClient,
    },
    token::v1::{GetConsentStateRequest, token_service_client::TokenServiceClient},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Console, page, session::Signed};

/// How long a test request may take, egress's retries included.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Methods the test request offers (those egress sends).
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// The longest path the test request takes.
const MAX_PATH: usize = 2048;

/// The most headers a test request takes.
const MAX_HEADERS: usize = 50;

/// The largest body a test request takes (the form as a whole is bounded by the guard).
const MAX_BODY: usize = 32 * 1024;

pub(crate) async fn list(
    State(console): State<Arc<Console>>,
    Extension(signed): Extension<Signed>,
) -> Response {
    let integration = console.ctx.table.current();
    let states = consent_states(&console.settings, &integration).await;
    let content = html! {
        h1 { "Connections" }
        @if console.settings.egress_endpoint.is_none() {
            p.muted { "Test requests are not configured: set HOOKYARD_ROUTER_EGRESS_ENDPOINT." }
        }
        @if integration.connections.is_empty() { p.muted { "The integration file has no connections." } }
        @for (name, connection) in &integration.connections {
            (card(&console.settings, &signed, name, connection, states.get(name)))
        }
    };
    page::layout("Connections", Some(&signed), content).into_response()
}

/// The name of an auth kind, as in the integration file.
fn kind(auth: &ConnectionAuth) -> &'static str {
    match auth {
        ConnectionAuth::None => "none",
        ConnectionAuth::Basic { .. } => "basic",
        ConnectionAuth::Header { .. } => "header",
        ConnectionAuth::Query { .. } => "query",
        ConnectionAuth::OAuth2ClientCredentials { .. } => "oauth2_client_credentials",
        ConnectionAuth::OAuth2AuthorizationCode { .. } => "oauth2_authorization_code",
    }
}

/// A URL without its user information and query, either of which may hold a credential.
fn without_credentials(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}{path}")
}

/// The host of a URL (and its port), nothing else.
fn host(url: &str) -> String {
    let bare = without_credentials(url);
    let rest = bare.split_once("://").map(|(_, r)| r).unwrap_or_default();
    rest.split('/').next().unwrap_or_default().to_owned()
}

/// How long the console waits for the token service's answer about one connection.
const CONSENT_TIMEOUT: Duration = Duration::from_secs(3);

/// The consent state of each authorization-code connection, as the token service tells it
/// (`connected`, `needs consent`, `broken: …`, or why it could not say); empty without a
/// token endpoint.
async fn consent_states(
    settings: &super::Settings,
    integration: &hookyard_core::Integration,
) -> std::collections::BTreeMap<String, String> {
    let mut states = std::collections::BTreeMap::new();
    let Some(endpoint) = &settings.token_endpoint else {
        return states;
    };
    let names = integration
        .connections
        .iter()
        .filter(|(_, c)| matches!(c.auth, ConnectionAuth::OAuth2AuthorizationCode { .. }))
        .map(|(name, _)| name.clone());
    let mut client = None;
    for name in names {
        if client.is_none() {
            client = TokenServiceClient::connect(endpoint.clone()).await.ok();
        }
        let state = match client.as_mut() {
            None => "unknown: the token service cannot be reached".to_owned(),
            Some(client) => {
                let mut request = tonic::Request::new(GetConsentStateRequest {
                    connection: name.clone(),
                });
                request.set_timeout(CONSENT_TIMEOUT);
                match client.get_consent_state(request).await {
                    Ok(answer) => {
                        let answer = answer.into_inner();
                        match answer.state.as_str() {
                            "needs_consent" => "needs consent".to_owned(),
                            "broken" => format!("broken: {}", answer.detail),
                            other => other.to_owned(),
                        }
                    }
                    Err(status) => format!("unknown: {}", status.message()),
                }
            }
        };
        states.insert(name, state);
    }
    states
}

/// The Connect link of a connection on the consent page at `base`.
fn connect_link(base: &str, name: &str) -> String {
    format!("{}/connect/{name}", base.trim_end_matches('/'))
}

fn card(
    settings: &super::Settings,
    signed: &Signed,
    name: &str,
    c: &Connection,
    state: Option<&String>,
) -> Markup {
    html! {
        section.connection id=(format!("connection-{name}")) {
            h2 { (name) }
            table {
                tr { th { "Auth" } td.kind { (kind(&c.auth)) } }
                tr { th { "Base URL" } td { (without_credentials(&c.base_url)) } }
                @if let Some(token_url) = c.auth.token_url() {
                    tr { th { "Token endpoint host" } td { (host(token_url)) } }
                }
                @if matches!(c.auth, ConnectionAuth::OAuth2AuthorizationCode { .. }) {
                    tr { th { "Consent" } td {
                        @if let Some(state) = state {
                            span.consent data-state=(state) { (state) } " "
                        }
                        @if let Some(base) = &settings.consent_url {
                            a.connect href=(connect_link(base, name)) { "Connect" }
                        } @else {
                            span.muted { "set HOOKYARD_ROUTER_CONSOLE_CONSENT_URL for the Connect link" }
                        }
                    } }
                }
            }
            @if settings.egress_endpoint.is_some() {
                form.test method="post" action=(format!("/console/connections/{name}/test")) {
                    (page::csrf(signed))
                    select name="method" { @for m in METHODS { option { (m) } } }
                    " "
                    input name="path" value="/" size="40" required;
                    br;
                    label { "Headers (one " code { "Name: value" } " a line)" br;
                        textarea name="headers" rows="3" cols="60" {} }
                    br;
                    label { "Body" br; textarea name="body" rows="5" cols="60" {} }
                    br;
                    button type="submit" { "Send a test request" }
                }
            }
        }
    }
}

/// The test request form (its `csrf` field is the session guard's).
#[derive(Deserialize)]
pub(crate) struct Test {
    method: String,
    path: String,
    /// One `Name: value` a line.
    #[serde(default)]
    headers: String,
    #[serde(default)]
    body: String,
}

fn check(test: &Test) -> Result<Vec<Header>, String> {
    if !METHODS.contains(&test.method.as_str()) {
        return Err("the method is one of GET, POST, PUT, PATCH, DELETE, HEAD".to_owned());
    }
    if !test.path.starts_with('/')
        || test.path.len() > MAX_PATH
        || test
            .path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "the path starts with '/', has no spaces and at most {MAX_PATH} characters"
        ));
    }
    if test.body.len() > MAX_BODY {
        return Err(format!("the body has at most {MAX_BODY} bytes"));
    }
    headers(&test.headers)
}

/// Header lines as headers; blank lines are skipped.
fn headers(lines: &str) -> Result<Vec<Header>, String> {
    let mut out = Vec::new();
    for (n, line) in lines.lines().map(str::trim).enumerate() {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line {} is not \"Name: value\"", n + 1))?;
        let (name, value) = (name.trim(), value.trim());
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!("header line {} has no valid name", n + 1));
        }
        if value.chars().any(char::is_control) {
            return Err(format!("header line {} has a control character", n + 1));
        }
        out.push(Header {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }
    if out.len() > MAX_HEADERS {
        return Err(format!("a test request has at most {MAX_HEADERS} headers"));
    }
    Ok(out)
}

pub(crate) async fn test(
    State(console): State<Arc<Console>>,
    Extension(signed): Extension<Signed>,
    Path(name): Path<String>,
    form: Result<Form<Test>, FormRejection>,
) -> Response {
    let Ok(Form(test)) = form else {
        return page::refusal(
            StatusCode::BAD_REQUEST,
            "the test request needs a method and a path",
        );
    };
    let headers = match check(&test) {
        Ok(headers) => headers,
        Err(problem) => return page::refusal(StatusCode::BAD_REQUEST, &problem),
    };
    if !console.ctx.table.current().connections.contains_key(&name) {
        return page::refusal(StatusCode::NOT_FOUND, "no such connection");
    }
    let Some(endpoint) = console.settings.egress_endpoint.clone() else {
        return page::refusal(
            StatusCode::CONFLICT,
            "test requests are not configured (HOOKYARD_ROUTER_EGRESS_ENDPOINT)",
        );
    };
    let sent = format!("{} {}", test.method, test.path);
    let request = TestConnectionRequest {
        connection: name.clone(),
        method: test.method,
        path: test.path,
        headers,
        body: test.body.into_bytes(),
    };
    let answer = ask(endpoint, request).await;
    let content = html! {
        h1 { "Test request on " (name) }
        p { code.sent { (sent) } }
        @match &answer {
            Ok(answer) => (answered(answer)),
            Err(problem) => p.problem { (problem) },
        }
        p { a href="/console/connections" { "Back to the connections" } }
    };
    page::layout("Test request", Some(&signed), content).into_response()
}

async fn ask(
    endpoint: String,
    test: TestConnectionRequest,
) -> Result<TestConnectionResponse, String> {
    let mut client = EgressServiceClient::connect(endpoint.clone())
        .await
        .map_err(|_| format!("egress cannot be reached at {endpoint}"))?;
    let mut request = tonic::Request::new(test);
    request.set_timeout(TEST_TIMEOUT);
    let response = client
        .test_connection(request)
        .await
        .map_err(|status| format!("egress refused: {:?}: {}", status.code(), status.message()))?;
    Ok(response.into_inner())
}

fn answered(answer: &TestConnectionResponse) -> Markup {
    html! {
        @if !answer.error_code.is_empty() {
            p.problem.answer { "No answer after " (answer.elapsed_ms) " ms (" (answer.error_code) "): " (answer.error) }
        } @else {
            p.answer { "HTTP " span.status { (answer.status) } " in " (answer.elapsed_ms) " ms" }
            table.headers {
                @for h in &answer.headers {
                    tr { th { (h.name) } td {
                        @if hookyard_core::redact::is_secret_response_header(&h.name) {
                            (hookyard_core::redact::REDACTED)
                        } @else { (h.value) }
                    } }
                }
            }
            (page::body(&answer.body_excerpt))
            @if answer.truncated { p.muted { "The partner's body was longer; egress keeps only its first 2 KiB." } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            without_credentials("https://user:pw@api.example/v1?key=s"),
            "https://api.example/v1"
        );
        assert_eq!(
            without_credentials("http://127.0.0.1:9/"),
            "http://127.0.0.1:9/"
        );
        assert_eq!(
            host("https://u:p@auth.example:8443/oauth/token?x=1"),
            "auth.example:8443"
        );
        assert_eq!(connect_link("http://t:8/", "crm"), "http://t:8/connect/crm");
    }

    #[test]
    fn test_requests_are_checked() {
        let test = |method: &str, path: &str| Test {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: String::new(),
            body: String::new(),
        };
        assert!(check(&test("GET", "/v1/ping?x=1")).is_ok());
        for (method, path) in [("get", "/"), ("TRACE", "/"), ("GET", "v1"), ("GET", "/a b")] {
            assert!(check(&test(method, path)).is_err(), "{method} {path}");
        }
        assert!(check(&test("GET", &format!("/{}", "a".repeat(MAX_PATH)))).is_err());
    }

    #[test]
    fn header_lines_are_checked() {
        let parsed = headers("X-Probe: 1\r\n\r\nContent-Type:  application/json ").expect("valid");
        let pairs: Vec<_> = parsed
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("X-Probe", "1"), ("Content-Type", "application/json")]
        );
        for refused in ["no colon", ": no name", "bad name: x", "X-A: \u{7}"] {
            assert!(headers(refused).is_err(), "{refused:?}");
        }
        assert!(headers(&"X-A: 1\n".repeat(MAX_HEADERS + 1)).is_err());
    }

    #[test]
    fn authorization_code_connections_link_to_the_consent_page_without_secrets() {
        let file = r#"
[connections.crm]
base_url = "https://api.crm.example"
[connections.crm.auth]
type = "oauth2_authorization_code"
authorize_url = "https://auth.crm.example/authorize"
token_url = "https://auth.crm.example/token"
client_id = "hookyard"
client_secret = "${env:CRM_SECRET}"
redirect_uri = "https://hooks.example/oauth/callback"
"#;
        let env = |name: &str| (name == "CRM_SECRET").then(|| "crm-secret-value".to_owned());
        let integration = hookyard_core::Integration::parse(file, &env).expect("valid");
        let crm = &integration.connections["crm"];
        let signed = Signed::for_tests();
        let mut settings = super::super::Settings {
            egress_endpoint: None,
            consent_url: Some("http://127.0.0.1:50055/".to_owned()),
            token_endpoint: None,
        };
        let shown = card(&settings, &signed, "crm", crm, None).into_string();
        assert!(
            shown.contains(r#"href="http://127.0.0.1:50055/connect/crm""#),
            "{shown}"
        );
        assert!(shown.contains("oauth2_authorization_code") && shown.contains("auth.crm.example"));
        assert!(
            !shown.contains("crm-secret-value") && !shown.contains("form"),
            "{shown}"
        );
        settings.consent_url = None;
        let state = "needs consent".to_owned();
        let shown = card(&settings, &signed, "crm", crm, Some(&state)).into_string();
        assert!(!shown.contains("/connect/crm"), "{shown}");
        assert!(
            shown.contains(r#"data-state="needs consent""#),
            "the token service's answer is shown: {shown}"
        );
    }

    #[test]
    fn answers_redact_credential_headers_and_escape_bodies() {
        let answer = TestConnectionResponse {
            status: 200,
            headers: vec![
                hookyard_proto::egress::v1::Header {
                    name: "Set-Cookie".to_owned(),
                    value: "sid=secret-value".to_owned(),
                },
                hookyard_proto::egress::v1::Header {
                    name: "Content-Type".to_owned(),
                    value: "text/html".to_owned(),
                },
            ],
            body_excerpt: b"<b>hi</b>".to_vec(),
            ..Default::default()
        };
        let shown = answered(&answer).into_string();
        assert!(!shown.contains("secret-value"), "{shown}");
        assert!(
            shown.contains("text/html") && shown.contains("&lt;b&gt;"),
            "{shown}"
        );
    }
}
