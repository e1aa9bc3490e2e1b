//! The consent page: lists the `oauth2_authorization_code` connections and their state, and
//! runs the authorization code flow (RFC 6749 §4.1 with PKCE S256, RFC 7636; `iss` checked as
//! RFC 9207 says).
//!
//! `GET /` lists connections; `GET /connect/<name>` stores a one-time `state` with the PKCE
//! verifier in the token bucket (so any replica can take the callback) and redirects (302) to
//! the authorization server; `GET /oauth/callback` takes that state once, checks `iss`,
//! exchanges the code and stores the tokens.
//!
//! Status codes of the callback: 200 connected; 400 missing, unknown, expired or reused
//! `state`, `iss` mismatch, an `error` from the authorization server, or a code it refused
//! (wrong PKCE verifier, replayed code, redirect URI mismatch); 502 authorization server
//! unreachable or failing; 503 token store unavailable. Every page is HTML with every value
//! escaped, `no-store`, `no-referrer` (the callback URL holds the code) and a CSP allowing no
//! scripts.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hookyard_core::config::OAUTH2_CALLBACK_PATH;
use secrecy::SecretString;

use crate::{
    Error,
    cache::Tokens,
    flight::record_from,
    grant::{Grant, Issued, Kind, sanitise_code},
    live::Live,
    page::{Page, escape},
    store::{Flow, Store, now_ms, random_id},
};

/// The consent page's routes.
pub(crate) fn router(tokens: Arc<Live>) -> Router {
    Router::new()
        .route("/", get(list))
        .route("/connect/{connection}", get(connect))
        .route(OAUTH2_CALLBACK_PATH, get(callback))
        .fallback(not_found)
        .with_state(tokens)
}

async fn not_found() -> Response {
    Page::error(StatusCode::NOT_FOUND, "Not found", "There is no page here.").into_response()
}

/// A connection's state, as the list shows it.
pub(crate) enum Standing {
    Connected { expires_at_ms: i64 },
    NeedsConsent,
    Broken(String),
}

/// Whether the authorization-code connection `name` has a person's consent: a record that is
/// not marked as needing it and has a refresh token or a usable access token.
pub(crate) async fn standing(store: &Store, name: &str) -> Standing {
    match store.load(name).await {
        Ok(Some((record, _))) if record.needs_consent => Standing::NeedsConsent,
        Ok(Some((record, _))) if record.refresh_token.is_some() || record.usable_at(now_ms()) => {
            Standing::Connected {
                expires_at_ms: record.expires_at_ms,
            }
        }
        Ok(_) => Standing::NeedsConsent,
        Err(error) => Standing::Broken(error.to_string()),
    }
}

async fn list(State(live): State<Arc<Live>>) -> Response {
    let tokens = live.current();
    let Some(store) = tokens.store() else {
        return store_down().into_response();
    };
    let mut rows = String::new();
    for grant in tokens.grants() {
        if !matches!(grant.kind(), Kind::AuthorizationCode { .. }) {
            continue;
        }
        let name = grant.connection();
        let standing = standing(store, name).await;
        let (class, text) = match &standing {
            Standing::Connected { expires_at_ms } => (
                "connected",
                if *expires_at_ms > 0 {
                    format!(
                        "connected (access token valid until {})",
                        unix_ms(*expires_at_ms)
                    )
                } else {
                    "connected".to_owned()
                },
            ),
            Standing::NeedsConsent => ("needs-consent", "needs consent".to_owned()),
            Standing::Broken(why) => ("broken", format!("broken: {why}")),
        };
        let link = if matches!(standing, Standing::Connected { .. }) {
            "Reconnect"
        } else {
            "Connect"
        };
        rows.push_str(&format!(
            "<tr><td>{name}</td><td class=\"{class}\" data-state=\"{class}\">{text}</td>\
             <td><a href=\"/connect/{name}\">{link}</a></td></tr>",
            name = escape(name),
            text = escape(&text),
        ));
    }
    let body = if rows.is_empty() {
        "<p>No connection uses <code>oauth2_authorization_code</code>.</p>".to_owned()
    } else {
        format!(
            "<table><tr><th>Connection</th><th>State</th><th></th></tr>{rows}</table>\
             <p>Connect sends you to the partner's sign-in and consent page, then back here.</p>"
        )
    };
    Page::new(StatusCode::OK, "Connections", body).into_response()
}

fn unix_ms(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(time).to_string()
}

async fn connect(State(live): State<Arc<Live>>, Path(connection): Path<String>) -> Response {
    let tokens = live.current();
    let grant = match tokens.grant(&connection) {
        Ok(grant) if matches!(grant.kind(), Kind::AuthorizationCode { .. }) => grant,
        _ => {
            return Page::error(
                StatusCode::NOT_FOUND,
                "Unknown connection",
                &format!(
                    "No connection named {} uses oauth2_authorization_code.",
                    escape(&connection)
                ),
            )
            .into_response();
        }
    };
    let Some(store) = tokens.store() else {
        return store_down().into_response();
    };
    let state = random_id(24);
    let Some((url, verifier)) = grant.authorize(&state) else {
        return Page::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No authorization URL",
            "The connection has no authorize_url.",
        )
        .into_response();
    };
    let flow = Flow {
        connection: connection.clone(),
        verifier: verifier.secret().clone(),
    };
    if let Err(error) = store.put_flow(&state, &flow).await {
        tracing::warn!(
            connection,
            error = error.chain(),
            "cannot store a consent state"
        );
        return store_down().into_response();
    }
    tracing::info!(connection, "consent started");
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, url.to_string()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
    )
        .into_response()
}

fn store_down() -> Page {
    Page::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Token store unavailable",
        "The token store cannot be reached. Try again in a moment.",
    )
}

fn bad(title: &str, text: &str) -> Page {
    Page::error(StatusCode::BAD_REQUEST, title, text)
}

async fn callback(
    State(live): State<Arc<Live>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    match complete(&live.current(), &params).await {
        Ok(connection) => Page::new(
            StatusCode::OK,
            "Connected",
            format!(
                "<p class=\"connected\" data-state=\"connected\">{} is connected.</p>\
                 <p><a href=\"/\">Back to the connections</a></p>",
                escape(&connection)
            ),
        ),
        Err(page) => page,
    }
    .into_response()
}

/// Completes the consent the callback answers and returns the connection it connected, or
/// the error page to show. Every check of the callback comes before the code exchange, so an
/// unknown state, a refusal or another issuer's answer never sends the code anywhere.
async fn complete(tokens: &Tokens, params: &BTreeMap<String, String>) -> Result<String, Page> {
    let Some(store) = tokens.store() else {
        return Err(store_down());
    };
    let flow = take_flow(store, params).await?;
    let connection = flow.connection;
    let Ok(grant) = tokens.grant(&connection) else {
        return Err(bad(
            "Unknown connection",
            "The connection no longer exists.",
        ));
    };
    let code = authorization_code(grant, &connection, params)?;
    let verifier = SecretString::from(flow.verifier);
    let issued = exchange(grant, &connection, code, &verifier).await?;
    let record = record_from(issued, None, tokens.policy(), now_ms());
    if let Err(error) = store.save(&connection, &record).await {
        tracing::warn!(connection, error = error.chain(), "cannot store new tokens");
        return Err(store_down());
    }
    tracing::info!(connection, "connection connected");
    Ok(connection)
}

/// Takes the pending consent named by the callback's `state`, once, so a replayed callback URL
/// finds nothing. A flow that does not open is shown as unknown: it cannot be completed either
/// way.
async fn take_flow(store: &Store, params: &BTreeMap<String, String>) -> Result<Flow, Page> {
    let Some(state) = params.get("state") else {
        return Err(bad(
            "Missing state",
            "The callback has no state parameter. Start again from the connections page.",
        ));
    };
    match store.take_flow(state).await {
        Ok(Some(flow)) => Ok(flow),
        Ok(None) => Err(bad(
            "Unknown or used state",
            "This consent is unknown, expired or was already completed. Start again from the connections page.",
        )),
        Err(Error::Undecryptable { .. } | Error::CorruptRecord { .. }) => Err(bad(
            "Unknown or used state",
            "This consent cannot be read. Start again from the connections page.",
        )),
        Err(error) => {
            tracing::warn!(error = error.chain(), "cannot read a consent state");
            Err(store_down())
        }
    }
}

/// The authorization code the server sent, once its answer is known to be a consent (not an
/// `error`) from the configured issuer.
fn authorization_code<'p>(
    grant: &Grant,
    connection: &str,
    params: &'p BTreeMap<String, String>,
) -> Result<&'p str, Page> {
    if let Some(error) = params.get("error") {
        tracing::warn!(connection, error = %sanitise_code(error), "authorization server refused the consent");
        return Err(bad(
            "Consent refused",
            &format!(
                "The authorization server of {} answered: {}. Start again from the connections page.",
                escape(connection),
                escape(&sanitise_code(error))
            ),
        ));
    }
    if let (
        Kind::AuthorizationCode {
            issuer: Some(expected),
        },
        Some(iss),
    ) = (grant.kind(), params.get("iss"))
        && iss != expected
    {
        // RFC 9207: a response from another server (a mix-up attack) is not used.
        tracing::warn!(
            connection,
            "callback iss does not match the configured issuer"
        );
        return Err(bad(
            "Wrong issuer",
            &format!(
                "The response came from an issuer other than the one configured for {}; it was not used.",
                escape(connection)
            ),
        ));
    }
    match params.get("code") {
        Some(code) => Ok(code),
        None => Err(bad(
            "Missing code",
            "The callback has no authorization code.",
        )),
    }
}

/// Exchanges `code` for tokens. A server that is down or failing is a 502, as trying again
/// later may work; a refused code is a 400, as it never will.
async fn exchange(
    grant: &Grant,
    connection: &str,
    code: &str,
    verifier: &SecretString,
) -> Result<Issued, Page> {
    grant.exchange(code, verifier).await.map_err(|error| {
        tracing::warn!(connection, error = error.chain(), "code exchange failed");
        let status = if error.is_transient() {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::BAD_REQUEST
        };
        Page::error(
            status,
            "Code exchange failed",
            &format!(
                "{}. Start again from the connections page.",
                escape(&error.to_string())
            ),
        )
    })
}
