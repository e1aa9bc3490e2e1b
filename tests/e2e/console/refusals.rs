//! The console's refusals over plain HTTP: no page without a session, no action without the
//! session's CSRF token, no session from a wrong token; the session cookie's attributes; the
//! admin token never in a page; a sender's `<script>` shown as text; the time search.

use std::time::{Duration, SystemTime};

use reqwest::{StatusCode, header, redirect::Policy};
use serde_json::json;

use super::handler_status;
use crate::{harness::*, operate::fanout};

/// The value of the first `csrf` field of a page.
fn csrf(page: &str) -> Option<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker)? + marker.len();
    let end = page[start..].find('"')?;
    Some(page[start..start + end].to_owned())
}

struct Console {
    http: reqwest::Client,
    base: String,
}

impl Console {
    fn new(stack: &Stack) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()?,
            base: format!("{}/console", stack.admin),
        })
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> anyhow::Result<reqwest::Response> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        Ok(request.send().await?)
    }

    async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        form: &[(&str, &str)],
    ) -> anyhow::Result<reqwest::Response> {
        let body: String = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        Ok(request.send().await?)
    }

    /// Signs in; answers the `name=value` of the session cookie.
    async fn sign_in(&self) -> anyhow::Result<String> {
        let r = self
            .post("/sign-in", None, &[("token", ADMIN_TOKEN)])
            .await?;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let set = r
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(!set.contains(ADMIN_TOKEN), "the cookie is not the token");
        Ok(set.split(';').next().unwrap_or_default().to_owned())
    }
}

/// A UTC time as a form field (`2026-12-01T20:30:00`).
fn form_time(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .trim_end_matches('Z')
        .to_owned()
}

#[tokio::test]
async fn console_pages_need_a_session_and_actions_their_csrf_token() -> anyhow::Result<()> {
    let (stack, _partner, _auth) = crate::operate::stack_with_working_partner(&fanout(5)).await?;
    let console = Console::new(&stack)?;
    refused_without_a_session(&console).await?;

    let session = console.sign_in().await?;
    let cookie = Some(session.as_str());
    hookyard_testkit::wait_for(PATIENCE, "orders' worker to bind its consumer", || async {
        handler_status(&stack, "orders")
            .await
            .is_ok_and(|h| h["consumer"] == true)
    })
    .await?;
    let page = console.get("/handlers", cookie).await?;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()[header::X_FRAME_OPTIONS], "DENY");
    let page = page.text().await?;
    assert!(!page.contains(ADMIN_TOKEN), "the token is never in a page");
    let token = csrf(&page).expect("the page's forms carry a csrf token");
    actions_need_the_csrf_token(&console, &stack, cookie, &token).await?;
    events_are_escaped_and_searched(&console, &stack, cookie).await?;

    let r = stack
        .http()
        .get(format!("{}/v1/handlers", stack.admin))
        .header(header::COOKIE, &session)
        .send()
        .await?;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a session is not a bearer token"
    );

    let r = console
        .post("/sign-out", cookie, &[("csrf", &token)])
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = console.get("/events", cookie).await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signed out");
    stack.stop().await;
    Ok(())
}

async fn refused_without_a_session(console: &Console) -> anyhow::Result<()> {
    let r = console.get("/events", None).await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/console/sign-in");
    let r = console
        .post("/handlers/orders/pause", None, &[("csrf", "x")])
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = console
        .get("/events", Some("hookyard_console=forged"))
        .await?;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "an unknown session is none"
    );
    let wrong = console
        .post("/sign-in", None, &[("token", "not-the-admin-token")])
        .await?;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    let empty = console.post("/sign-in", None, &[]).await?;
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);

    Ok(())
}

async fn actions_need_the_csrf_token(
    console: &Console,
    stack: &Stack,
    cookie: Option<&str>,
    token: &str,
) -> anyhow::Result<()> {
    for form in [
        vec![],
        vec![("csrf", "wrong")],
        vec![("csrf", &token[..63])],
    ] {
        let r = console
            .post("/handlers/orders/pause", cookie, &form)
            .await?;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{form:?}");
    }
    assert_eq!(handler_status(stack, "orders").await?["paused"], false);
    let r = console
        .post(
            "/handlers/orders/pause",
            cookie,
            &[("csrf", token), ("minutes", "0")],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a pause of 0 minutes");
    let r = console
        .post("/handlers/orders/pause", cookie, &[("csrf", token)])
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(handler_status(stack, "orders").await?["paused"], true);
    let r = console
        .post("/handlers/orders/resume", cookie, &[("csrf", token)])
        .await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(handler_status(stack, "orders").await?["paused"], false);
    let r = console
        .post("/handlers/nobody/resume", cookie, &[("csrf", token)])
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = console
        .post(
            "/connections/erp/test",
            cookie,
            &[("csrf", token), ("method", "TRACE"), ("path", "/")],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    Ok(())
}

async fn events_are_escaped_and_searched(
    console: &Console,
    stack: &Stack,
    cookie: Option<&str>,
) -> anyhow::Result<()> {
    let sent = SystemTime::now();
    let id = stack
        .accepted(
            "order.created",
            "x-1",
            &json!({"note": "<script>alert(1)</script>"}),
        )
        .await?;
    let event = console
        .get(&format!("/events/{id}"), cookie)
        .await?
        .text()
        .await?;
    assert!(
        event.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{event}"
    );
    assert!(!event.contains("<script>"), "a sender's script is text");
    let r = console
        .get("/events/evt_00000000000000000000000000000000", cookie)
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let search = |since: SystemTime| format!("/events?source=shop&since={}", form_time(since));
    let found = console
        .get(&search(sent - Duration::from_secs(60)), cookie)
        .await?;
    assert!(found.text().await?.contains(&id));
    let later = console
        .get(&search(sent + Duration::from_secs(3600)), cookie)
        .await?;
    assert!(
        !later.text().await?.contains(&id),
        "the time bounds the search"
    );
    let r = console.get("/events?since=yesterday", cookie).await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = console.get("/events?unknown=1", cookie).await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    Ok(())
}
