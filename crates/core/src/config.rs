//! The integration file: one TOML file read by every service, each using its part.
//!
//! ```toml
//! [sources.shop]      # listen endpoints and polled partner APIs (ingress, router)
//! [[routes]]          # event type → handlers (router)
//! [handlers.orders]   # pipelines of steps (worker)
//! [connections.erp]   # partner APIs and their auth (egress, token)
//! ```
//!
//! Loading collects every problem it can find — unknown keys, bad values, references to missing
//! handlers or connections, unresolvable secrets — each with the key it concerns and, where the
//! key is in the file, its line. The model is in [`model`], secret references in [`secret`].

pub mod advice;
pub mod dedup;
pub mod handshake;
pub mod inbound;
pub mod model;
pub mod oauth2;
pub mod outbound;
pub mod poll;
pub mod reply;
pub mod secret;
pub mod steps;
mod validate;
mod validate_handlers;

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

pub use dedup::{DedupKey, DedupPreset};
pub use handshake::{EchoHandshake, EchoWhen, Handshake};
pub use inbound::{RateLimit, parse_cidr};
pub use model::*;
pub use oauth2::{PrivateKeyJwt, SigningAlg};
pub use outbound::{Breaker, CaMode, ConnectionTls, Retry};
pub use poll::{CursorFrom, Pagination, Poll, PollBackoff, PollJq, PollValue, PollVars, Schedule};
pub use reply::{Reply, ReplyMode, ReplyStep};
pub use secret::{EnvLookup, Secret, SecretError, SecretRef};
pub use steps::{
    BodyFormat, EnvValue, HttpStep, PublishStep, Step, SubprocessMode, SubprocessStep,
    TransformStep,
};

/// The whole integration file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Integration {
    /// Listen endpoints and polled partner APIs, by name.
    #[serde(default)]
    pub sources: BTreeMap<String, Source>,
    /// Routes, evaluated in order; every matching route contributes its handlers.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Handlers, by name.
    #[serde(default)]
    pub handlers: BTreeMap<String, Handler>,
    /// Partner connections, by name.
    #[serde(default)]
    pub connections: BTreeMap<String, Connection>,
}

/// Which secrets a service resolves at start. A service resolves only the secrets it uses, so
/// its environment needs only those: the router never holds a partner's client secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretScope {
    /// Every secret (`hookyard validate`, `hookyard dev`).
    All,
    /// Secrets under `sources` (ingress).
    Sources,
    /// Secrets under `connections` (egress).
    Connections,
    /// Client secrets of OAuth 2.0 connections (token).
    OAuth2Clients,
    /// None (router, worker); references are still checked for their form.
    None,
}

/// One thing wrong with an integration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key the problem concerns, e.g. `handlers.orders.steps[0].connection`.
    pub key: String,
    /// What is wrong (never contains a secret value).
    pub message: String,
    /// 1-based line of the key in the file, when it is there.
    pub line: Option<usize>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// The integration file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read integration file {path}")]
    Read {
        /// Path of the file.
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file has problems; all of them are listed.
    #[error("integration file is invalid:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl LoadError {
    /// The problems found, empty for a read error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid(p) => p,
            Self::Read { .. } => &[],
        }
    }
}

impl Integration {
    /// Loads, validates and resolves every secret of the file from the process environment.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        Self::load_scoped(path, SecretScope::All)
    }

    /// Loads and validates the file, resolving only the secrets in `scope` from the process
    /// environment. Unresolved secrets expose an empty value.
    pub fn load_scoped(path: &Path, scope: SecretScope) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_scoped(&text, &|name| std::env::var(name).ok(), scope)
    }

    /// Resolves the secrets in the `env` of the subprocess steps of `handlers`, for a worker
    /// that loaded the file with [`SecretScope::None`] and runs those handlers.
    pub fn resolve_handler_env(
        &mut self,
        handlers: &[String],
        env: EnvLookup<'_>,
    ) -> Result<(), LoadError> {
        let mut problems = Vec::new();
        validate::resolve_step_env(self, env, Some(handlers), &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LoadError::Invalid(problems))
        }
    }

    /// Parses, validates and resolves every secret of the text of an integration file.
    pub fn parse(text: &str, env: EnvLookup<'_>) -> Result<Self, LoadError> {
        Self::parse_scoped(text, env, SecretScope::All)
    }

    /// Parses and validates the text, resolving the secrets in `scope` with `env`.
    pub fn parse_scoped(
        text: &str,
        env: EnvLookup<'_>,
        scope: SecretScope,
    ) -> Result<Self, LoadError> {
        let mut problems = Vec::new();
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| LoadError::Invalid(vec![toml_problem(text, &e)]))?;
        let mut unknown = Vec::new();
        let parsed: Result<Self, _> =
            serde_ignored::deserialize(deserializer, |path| unknown.push(validate::key_of(&path)));
        for key in unknown {
            problems.push(Problem {
                line: validate::locate(text, &key),
                key,
                message: "unknown key".to_owned(),
            });
        }
        let mut integration = match parsed {
            Ok(i) => i,
            Err(e) => {
                problems.push(toml_problem(text, &e));
                return Err(LoadError::Invalid(problems));
            }
        };
        validate::check(&integration, &mut problems);
        validate::resolve_secrets(&mut integration, env, scope, &mut problems);
        for p in problems.iter_mut().filter(|p| p.line.is_none()) {
            p.line = validate::locate(text, &p.key);
        }
        if problems.is_empty() {
            Ok(integration)
        } else {
            Err(LoadError::Invalid(problems))
        }
    }

    /// Handlers that receive events of `event_type` from `source`, in route order, without
    /// repeats, counting routes with a `when` filter as matching.
    pub fn handlers_for(&self, source: &str, event_type: &str) -> Vec<&str> {
        self.handlers_when(source, event_type, &|_| true)
    }

    /// [`Integration::handlers_for`], taking only the routes whose `when` filter `holds` for the
    /// event (routes without one always match).
    pub fn handlers_when(
        &self,
        source: &str,
        event_type: &str,
        holds: &dyn Fn(&crate::expr::Expr) -> bool,
    ) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for route in &self.routes {
            if route.source.as_deref().is_some_and(|s| s != source) {
                continue;
            }
            if !pattern_matches(&route.event, event_type) {
                continue;
            }
            if route.when.as_ref().is_some_and(|when| !holds(when)) {
                continue;
            }
            for h in &route.handlers {
                if !out.contains(&h.as_str()) {
                    out.push(h);
                }
            }
        }
        out
    }
}

/// Matches an event type against a route pattern: `*` matches any run of characters.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, rest) = (parts[0], &parts[1..]);
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let last = rest.len() - 1;
    for (i, part) in rest.iter().enumerate() {
        if i == last {
            return remaining.ends_with(part);
        }
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    true
}

// The message only: toml's full rendering quotes the offending line, which may hold a secret.
fn toml_problem(text: &str, e: &toml::de::Error) -> Problem {
    let start = e.span().map(|span| span.start.min(text.len()));
    let line = start.map(|s| text[..s].matches('\n').count() + 1);
    Problem {
        key: start
            .and_then(|s| validate::key_at(text, s))
            .unwrap_or_else(|| "(file)".to_owned()),
        message: e.message().to_owned(),
        line,
    }
}

#[cfg(test)]
mod tests;
