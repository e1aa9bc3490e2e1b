//! Console sessions: the sign-in form takes the admin token (checked like a bearer token, in
//! constant time) and answers a session cookie; [`require`] admits a request only with a live
//! session, and a form post only with that session's CSRF token.
//!
//! Session ids and CSRF tokens are 32 bytes from the operating system's CSPRNG, hex-encoded.
//! Sessions live in this process's memory: a router restart signs everyone out, and each
//! router replica has its own (a load balancer in front of several needs sticky sessions).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Extension, Form,
    body::Body,
    extract::rejection::FormRejection,
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{Console, page};

/// The session cookie's name.
const COOKIE: &str = "hookyard_console";

/// How long a session lasts after sign-in.
const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

/// Live sessions at most; a sign-in past it is refused until some expire or sign out.
const MAX_SESSIONS: usize = 1_000;

/// The largest form body a console action reads.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The signed-in session of a request, for the pages' forms.
#[derive(Clone)]
pub(crate) struct Signed {
    id: String,
    /// Put in a hidden `csrf` field of every form the page holds.
    pub csrf: String,
}

#[cfg(test)]
impl Signed {
    /// A session for rendering pages in unit tests.
    pub(crate) fn for_tests() -> Self {
        Self {
            id: "test-session".to_owned(),
            csrf: "test-csrf".to_owned(),
        }
    }
}

struct Session {
    csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Sessions {
    fn open(&self) -> Option<Signed> {
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS {
            return None;
        }
        let signed = Signed {
            id: random_hex()?,
            csrf: random_hex()?,
        };
        live.insert(
            signed.id.clone(),
            Session {
                csrf: signed.csrf.clone(),
                expires: now + LIFETIME,
            },
        );
        Some(signed)
    }

    fn find(&self, id: &str) -> Option<Signed> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let session = live.get(id).filter(|s| s.expires > Instant::now())?;
        Some(Signed {
            id: id.to_owned(),
            csrf: session.csrf.clone(),
        })
    }

    fn close(&self, id: &str) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.remove(id);
    }
}

/// The session id in the request's cookies.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_owned())
        })
}

/// The middleware in front of every console page but the sign-in form.
pub(crate) async fn require(
    State(console): State<Arc<Console>>,
    request: Request,
    next: Next,
) -> Response {
    let reads = request.method() == Method::GET || request.method() == Method::HEAD;
    let Some(signed) = cookie(request.headers()).and_then(|id| console.sessions.find(&id)) else {
        if reads {
            return Redirect::to("/console/sign-in").into_response();
        }
        return page::refusal(StatusCode::UNAUTHORIZED, "sign in first");
    };
    // Anything but a read is an action, whatever its method.
    let mut request = if reads {
        request
    } else {
        match checked(request, &signed).await {
            Ok(request) => request,
            Err(refusal) => return refusal,
        }
    };
    request.extensions_mut().insert(signed);
    next.run(request).await
}

/// The request, put back together, when its form carries the session's CSRF token.
async fn checked(request: Request, signed: &Signed) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| page::refusal(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"))?;
    let presented = form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if !bool::from(presented.as_bytes().ct_eq(signed.csrf.as_bytes())) {
        tracing::warn!(path = %parts.uri.path(), "console action refused: missing or wrong csrf token");
        return Err(page::refusal(
            StatusCode::FORBIDDEN,
            "this form is not from this session; reload the page and try again",
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

pub(crate) async fn sign_in_page() -> Response {
    sign_in_form(StatusCode::OK, None)
}

fn sign_in_form(status: StatusCode, problem: Option<&str>) -> Response {
    let content = html! {
        h1 { "Sign in" }
        @if let Some(problem) = problem { p.problem { (problem) } }
        form method="post" action="/console/sign-in" {
            label { "Admin token " input type="password" name="token" autocomplete="current-password" required; }
            " "
            button type="submit" { "Sign in" }
        }
    };
    (status, page::layout("Sign in", None, content)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    token: String,
}

pub(crate) async fn sign_in(
    State(console): State<Arc<Console>>,
    form: Result<Form<SignIn>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return sign_in_form(
            StatusCode::BAD_REQUEST,
            Some("the form needs the admin token"),
        );
    };
    if !console.guard.admits_token(form.token.as_bytes()) {
        tracing::warn!("console sign-in refused: wrong token");
        return sign_in_form(StatusCode::UNAUTHORIZED, Some("wrong token"));
    }
    let Some(signed) = console.sessions.open() else {
        return page::refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open sessions; try again later",
        );
    };
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}",
        signed.id,
        LIFETIME.as_secs()
    );
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/console/events"),
    )
        .into_response()
}

pub(crate) async fn sign_out(
    State(console): State<Arc<Console>>,
    Extension(signed): Extension<Signed>,
) -> Response {
    console.sessions.close(&signed.id);
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0");
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/console/sign-in"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_their_id_until_closed() {
        let sessions = Sessions::default();
        let signed = sessions.open().expect("a session");
        assert_eq!(signed.id.len(), 64);
        assert_ne!(signed.id, signed.csrf);
        let found = sessions.find(&signed.id).expect("found");
        assert_eq!(found.csrf, signed.csrf);
        assert!(sessions.find(&signed.csrf).is_none());
        sessions.close(&signed.id);
        assert!(sessions.find(&signed.id).is_none());
    }

    #[test]
    fn the_session_cookie_is_read_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; hookyard_console=abc; b=2".parse().expect("value"),
        );
        assert_eq!(cookie(&headers).as_deref(), Some("abc"));
        assert_eq!(cookie(&HeaderMap::new()), None);
    }
}
