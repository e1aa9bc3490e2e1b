//! The web console: server-rendered HTML pages under `/console` on the admin listener, over the
//! same functions as the gRPC and JSON faces (nothing goes through HTTP to itself). No
//! JavaScript: every action is a plain form.
//!
//! - `session`: sign-in with the admin token, sessions kept in memory with an expiry (a random
//!   id in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/console`), and the guard in front
//!   of every page: no session is a redirect to the sign-in page (or 401 for a form post), a
//!   form post without its session's CSRF token is a 403;
//! - `page`: the layout, the security headers of every page, how bodies and times are shown;
//! - `events`: search by source, type and time; an event's headers, body and every handler's
//!   deliveries (the workers' outcomes and egress's audit of each partner call);
//! - `dead`: dead letters, each with replay and purge;
//! - `handlers`: lag, pending and waiting work, redeliveries, dead letters, the last error,
//!   pause and resume;
//! - `connections`: each connection's auth kind and non-secret settings, the Connect link of
//!   OAuth 2.0 authorization-code connections, and a test request through egress.
//!
//! Everything shown is escaped by the templates (`maud`): event bodies and headers are whatever
//! a sender or partner chose to send. The admin token and connection secrets are never part of
//! a page.

mod connections;
mod dead;
mod events;
mod handlers;
mod page;
mod session;

use std::sync::Arc;

use axum::{
    Router,
    response::Redirect,
    routing::{get, post},
};

use super::{Context, auth::Guard};

/// The console's part of the admin settings.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// gRPC endpoint of egress, for the connections page's test request; `None` turns the
    /// test request off.
    pub egress_endpoint: Option<String>,
    /// Base URL of the token service's consent page (`…/connect/<name>` is appended), for the
    /// Connect link of OAuth 2.0 authorization-code connections; `None` shows no link.
    pub consent_url: Option<String>,
    /// gRPC endpoint of the token service, for those connections' consent state; `None` shows
    /// no state.
    pub token_endpoint: Option<String>,
}

/// What every console page needs.
pub(crate) struct Console {
    ctx: Arc<Context>,
    guard: Arc<Guard>,
    sessions: session::Sessions,
    settings: Settings,
}

/// The console's routes, each behind the session guard except the sign-in page.
pub(crate) fn routes(ctx: Arc<Context>, guard: Arc<Guard>, settings: Settings) -> Router {
    let console = Arc::new(Console {
        ctx,
        guard,
        sessions: session::Sessions::default(),
        settings,
    });
    let pages = Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/events") }),
        )
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/events", get(events::list))
        .route("/console/events/{id}", get(events::show))
        .route("/console/dead-letters", get(dead::list))
        .route("/console/dead-letters/replay", post(dead::replay))
        .route("/console/dead-letters/purge", post(dead::purge))
        .route("/console/handlers", get(handlers::list))
        .route("/console/handlers/{name}/pause", post(handlers::pause))
        .route("/console/handlers/{name}/resume", post(handlers::resume))
        .route("/console/connections", get(connections::list))
        .route("/console/connections/{name}/test", post(connections::test))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            session::require,
        ));
    Router::new()
        .route(
            "/console/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .merge(pages)
        .layer(axum::middleware::map_response(page::secure_headers))
        .with_state(console)
}
