//! `POST /oauth2/token`: the OAuth 2.0 client credentials grant (RFC 6749 §4.4) with
//! `client_secret_basic` or `client_secret_post` client authentication (§2.3.1).

use std::{collections::HashMap, time::Instant};

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::json;

use crate::{
    Settings, Shared,
    credentials::{Presented, secret_eq},
    form, lock,
};

/// Why a token request was refused, as the error codes of RFC 6749 §5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Not a well-formed form, a required parameter missing or repeated, or two client
    /// authentication methods at once.
    InvalidRequest,
    /// Unknown client, wrong secret or no client authentication.
    InvalidClient,
    /// A grant type other than `client_credentials`.
    UnsupportedGrantType,
}

impl Refusal {
    fn code(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.code() }));
        match self {
            // §5.2: a 401 for invalid_client names the scheme the client should use.
            Self::InvalidClient => (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"hookyard-demo\""),
                )],
                body,
            )
                .into_response(),
            Self::InvalidRequest | Self::UnsupportedGrantType => {
                (StatusCode::BAD_REQUEST, body).into_response()
            }
        }
    }
}

/// The successful token response of RFC 6749 §5.1.
#[derive(Serialize)]
struct Issued {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

pub async fn token(State(demo): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    lock(&demo.journal).count_token_request();
    let granted = grant(&demo.settings, &headers, &body);
    let mut response = match granted {
        Ok(scope) => {
            let access_token = lock(&demo.tokens).issue(demo.settings.token_ttl, Instant::now());
            tracing::info!(
                client_id = %demo.settings.client_id,
                scope = scope.as_deref(),
                "access token issued"
            );
            let issued = Issued {
                access_token,
                token_type: "Bearer",
                expires_in: demo.settings.token_ttl.as_secs(),
                scope,
            };
            (StatusCode::OK, Json(issued)).into_response()
        }
        Err(refusal) => {
            tracing::warn!(error = refusal.code(), "token request refused");
            refusal.into_response()
        }
    };
    // §5.1: token responses must not be cached.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Checks a token request; on success returns the scope to grant (the one requested).
fn grant(settings: &Settings, headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, Refusal> {
    let params = parse_form(headers, body)?;
    authenticate(settings, Presented::from_headers(headers), &params)?;
    match params.get("grant_type").map(String::as_str) {
        None => Err(Refusal::InvalidRequest),
        Some("client_credentials") => Ok(params
            .get("scope")
            .filter(|scope| !scope.trim().is_empty())
            .cloned()),
        Some(_) => Err(Refusal::UnsupportedGrantType),
    }
}

fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, Refusal> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(Refusal::InvalidRequest);
    }
    let body = std::str::from_utf8(body).map_err(|_| Refusal::InvalidRequest)?;
    form::parse(body).map_err(|_| Refusal::InvalidRequest)
}

fn authenticate(
    settings: &Settings,
    presented: Presented,
    params: &HashMap<String, String>,
) -> Result<(), Refusal> {
    let form_id = params.get("client_id");
    let form_secret = params.get("client_secret");
    let (id, secret) = match presented {
        Presented::None => match (form_id, form_secret) {
            (Some(id), Some(secret)) => (id.clone(), secret.clone()),
            _ => return Err(Refusal::InvalidClient),
        },
        Presented::Basic { user, password } => {
            // §2.3: a client must not use more than one authentication method per request.
            if form_secret.is_some() {
                return Err(Refusal::InvalidRequest);
            }
            let id = form::decode(&user).map_err(|_| Refusal::InvalidClient)?;
            let secret = form::decode(&password).map_err(|_| Refusal::InvalidClient)?;
            if form_id.is_some_and(|form_id| *form_id != id) {
                return Err(Refusal::InvalidClient);
            }
            (id, secret)
        }
        Presented::Bearer(_) | Presented::Malformed => return Err(Refusal::InvalidClient),
    };
    // Both comparisons always run, so timing does not tell which one failed.
    let id_matches = secret_eq(&id, &settings.client_id);
    let secret_matches = secret_eq(&secret, &settings.client_secret);
    if id_matches & secret_matches {
        Ok(())
    } else {
        Err(Refusal::InvalidClient)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use base64::{Engine, engine::general_purpose::STANDARD};

    use super::*;

    fn settings() -> Settings {
        let mut settings = Settings::new("s3cr:et+%", "pw");
        settings.client_id = "my client".into();
        settings
    }

    fn headers(basic: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        if let Some(credentials) = basic {
            let value = format!("Basic {}", STANDARD.encode(credentials));
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&value).expect("valid header"),
            );
        }
        headers
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let headers = headers(Some("my+client:s3cr%3Aet%2B%25"));
        let granted = grant(
            &settings(),
            &headers,
            b"grant_type=client_credentials&scope=a+b",
        );
        assert_eq!(granted, Ok(Some("a b".into())));
    }

    #[test]
    fn post_credentials_are_accepted() {
        let body =
            b"grant_type=client_credentials&client_id=my+client&client_secret=s3cr%3Aet%2B%25";
        assert_eq!(grant(&settings(), &headers(None), body), Ok(None));
    }

    #[test]
    fn refusals_follow_rfc_6749() {
        let s = settings();
        let cases: [(Option<&str>, &[u8], Refusal); 7] = [
            (
                Some("my+client:wrong"),
                b"grant_type=client_credentials",
                Refusal::InvalidClient,
            ),
            (
                None,
                b"grant_type=client_credentials",
                Refusal::InvalidClient,
            ),
            (
                None,
                b"grant_type=client_credentials&client_id=my+client",
                Refusal::InvalidClient,
            ),
            (
                Some("my+client:s3cr%3Aet%2B%25"),
                b"grant_type=password",
                Refusal::UnsupportedGrantType,
            ),
            (
                Some("my+client:s3cr%3Aet%2B%25"),
                b"scope=a",
                Refusal::InvalidRequest,
            ),
            (
                Some("my+client:s3cr%3Aet%2B%25"),
                b"grant_type=a&grant_type=b",
                Refusal::InvalidRequest,
            ),
            (
                Some("my+client:s3cr%3Aet%2B%25"),
                b"grant_type=client_credentials&client_secret=x",
                Refusal::InvalidRequest,
            ),
        ];
        for (basic, body, expected) in cases {
            assert_eq!(grant(&s, &headers(basic), body), Err(expected), "{basic:?}");
        }
    }

    #[test]
    fn a_body_that_is_not_a_form_is_invalid_request() {
        let mut headers = headers(Some("my+client:s3cr%3Aet%2B%25"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let granted = grant(&settings(), &headers, b"grant_type=client_credentials");
        assert_eq!(granted, Err(Refusal::InvalidRequest));
    }
}
