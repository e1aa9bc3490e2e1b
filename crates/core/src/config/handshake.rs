//! Handshakes: the verification requests some senders make before (or while) they deliver
//! events, answered by ingress itself and never stored. Every field's `///` line is user
//! documentation.
//!
//! ```toml
//! [sources.slack]
//! path = "/hooks/slack"
//! handshake = { kind = "slack" }
//! [sources.meta]
//! path = "/hooks/meta"
//! handshake = { kind = "websub", verify_token = "${env:META_VERIFY_TOKEN}" }
//! ```

use serde::Deserialize;

use super::{Problem, Secret};

/// A handshake ingress answers for a source without storing the request or reaching a handler.
///
/// Handshakes read from the query string (`websub`, `microsoft_graph`, `echo` with `query`) are
/// answered for `GET` and `POST` whatever the source's `methods` (any other request with that
/// method still gets 405), before inbound auth and without reading the body: the sender proves
/// itself with the verify token (`websub`) or proves nothing (`microsoft_graph`, `echo`), and
/// nothing but the echoed value is returned. Handshakes read from the body (`slack`, `zoom`,
/// `echo` with `json_pointer`) are answered only after inbound auth and signature verification
/// pass, on a method the source accepts; any other body is a normal event.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Handshake {
    /// Slack Events API: a JSON body `{"type": "url_verification", "challenge": "…"}` is answered
    /// `{"challenge": "…"}`.
    Slack {},
    /// WebSub / Meta (Facebook, Instagram, WhatsApp): `GET ?hub.mode=subscribe&hub.verify_token=…
    /// &hub.challenge=…` is answered with the challenge as text when the token matches, else 403.
    Websub {
        /// The verify token entered at the sender, as a secret reference.
        verify_token: Secret,
    },
    /// Microsoft Graph change notifications: a request with `?validationToken=…` is answered
    /// with the token as text. Graph's validation request carries no secret, so it needs none.
    MicrosoftGraph {},
    /// Zoom: a JSON body `{"event": "endpoint.url_validation", "payload": {"plainToken": "…"}}`
    /// is answered `{"plainToken": "…", "encryptedToken": hex(HMAC-SHA256(secret_token, plainToken))}`.
    Zoom {
        /// The app's secret token, as a secret reference.
        secret_token: Secret,
    },
    /// Any other sender: echo a query parameter, or a field of a JSON body.
    Echo(EchoHandshake),
}

/// A generic echo handshake: exactly one of `query` and `json_pointer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoHandshake {
    /// Query parameter whose value is answered as text, e.g. `"challenge"`.
    pub query: Option<String>,
    /// JSON pointer (RFC 6901) to a string field of the body, answered as a JSON object with
    /// the pointer's last segment as key, e.g. `"/challenge"` → `{"challenge": "…"}`.
    pub json_pointer: Option<String>,
    /// With `json_pointer`: only bodies where this field equals this string are handshakes,
    /// e.g. `{ pointer = "/type", equals = "verification" }`. Without it, every body holding a
    /// string at `json_pointer` is one.
    pub when: Option<EchoWhen>,
}

/// A condition on a JSON body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoWhen {
    /// JSON pointer (RFC 6901) to a field of the body, e.g. `"/type"`.
    pub pointer: String,
    /// String the field must equal.
    pub equals: String,
}

impl Handshake {
    /// Name of the kind, as written in the file (`kind = "…"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Slack {} => "slack",
            Self::Websub { .. } => "websub",
            Self::MicrosoftGraph {} => "microsoft_graph",
            Self::Zoom { .. } => "zoom",
            Self::Echo(_) => "echo",
        }
    }

    /// The secret of the kinds that have one, with its key below `handshake`.
    pub fn secret(&self) -> Option<(&'static str, &Secret)> {
        match self {
            Self::Websub { verify_token } => Some(("verify_token", verify_token)),
            Self::Zoom { secret_token } => Some(("secret_token", secret_token)),
            Self::Slack {} | Self::MicrosoftGraph {} | Self::Echo(_) => None,
        }
    }

    /// The secret of the kinds that have one, with its key below `handshake`, for resolving it.
    pub fn secret_mut(&mut self) -> Option<(&'static str, &mut Secret)> {
        match self {
            Self::Websub { verify_token } => Some(("verify_token", verify_token)),
            Self::Zoom { secret_token } => Some(("secret_token", secret_token)),
            Self::Slack {} | Self::MicrosoftGraph {} | Self::Echo(_) => None,
        }
    }

    /// Whether the handshake is read from the query string (and so may come as a `GET`).
    pub fn reads_query(&self) -> bool {
        match self {
            Self::Websub { .. } | Self::MicrosoftGraph {} => true,
            Self::Echo(echo) => echo.query.is_some(),
            Self::Slack {} | Self::Zoom { .. } => false,
        }
    }
}

/// Value rules of a source's `handshake`; `key` is `sources.NAME.handshake`.
pub(super) fn check(problems: &mut Vec<Problem>, key: &str, handshake: &Handshake) {
    let Handshake::Echo(echo) = handshake else {
        return;
    };
    let mut push = |field: &str, message: &str| {
        problems.push(Problem {
            key: format!("{key}.{field}"),
            message: message.to_owned(),
            line: None,
        });
    };
    match (&echo.query, &echo.json_pointer) {
        (Some(_), Some(_)) => push("json_pointer", "use either query or json_pointer, not both"),
        (None, None) => push("query", "echo needs query or json_pointer"),
        (Some(query), None) => {
            if query.is_empty() {
                push("query", "must not be empty");
            }
            if echo.when.is_some() {
                push("when", "applies to json_pointer only");
            }
        }
        (None, Some(pointer)) => {
            if !pointer.starts_with('/') {
                push("json_pointer", "must be a JSON pointer starting with '/'");
            }
        }
    }
    if let Some(when) = &echo.when
        && !when.pointer.starts_with('/')
    {
        push("when.pointer", "must be a JSON pointer starting with '/'");
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Integration, Problem, SecretScope};

    use super::*;

    fn env(name: &str) -> Option<String> {
        Some(format!("value-of-{name}"))
    }

    fn source(handshake: &str) -> String {
        format!("[sources.s]\npath = \"/s\"\nhandshake = {handshake}\n")
    }

    fn problems(handshake: &str) -> Vec<Problem> {
        match Integration::parse(&source(handshake), &env) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems().to_vec(),
        }
    }

    fn keys(handshake: &str) -> Vec<String> {
        problems(handshake).into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn every_kind_parses_and_its_secret_resolves_for_ingress() {
        for (text, kind) in [
            (r#"{ kind = "slack" }"#, "slack"),
            (
                r#"{ kind = "websub", verify_token = "${env:VT}" }"#,
                "websub",
            ),
            (r#"{ kind = "microsoft_graph" }"#, "microsoft_graph"),
            (r#"{ kind = "zoom", secret_token = "${env:ZT}" }"#, "zoom"),
            (r#"{ kind = "echo", query = "challenge" }"#, "echo"),
            (
                r#"{ kind = "echo", json_pointer = "/challenge", when = { pointer = "/type", equals = "verification" } }"#,
                "echo",
            ),
        ] {
            let i = Integration::parse_scoped(&source(text), &env, SecretScope::Sources)
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            let mut handshake = i.sources["s"].handshake.clone().expect("handshake");
            assert_eq!(handshake.kind(), kind);
            if let Some((_, secret)) = handshake.secret_mut() {
                assert!(secret.expose().starts_with("value-of-"), "{text}");
            }
        }
    }

    #[test]
    fn handshake_secrets_are_references_resolved_in_the_sources_scope_only() {
        assert_eq!(
            keys(r#"{ kind = "websub", verify_token = "literal" }"#),
            ["sources.s.handshake"]
        );
        let missing = Integration::parse(
            &source(r#"{ kind = "zoom", secret_token = "${env:ZT}" }"#),
            &|_| None,
        )
        .expect_err("unset variable");
        assert_eq!(
            missing.problems()[0].key,
            "sources.s.handshake.secret_token"
        );
        let i = Integration::parse_scoped(
            &source(r#"{ kind = "zoom", secret_token = "${env:ZT}" }"#),
            &|_| None,
            SecretScope::Connections,
        )
        .expect("not resolved outside the sources scope");
        assert!(i.sources["s"].handshake.is_some());
    }

    #[test]
    fn unknown_kinds_and_keys_are_refused() {
        for text in [
            r#"{ kind = "smtp" }"#,
            r#"{ kind = "slack", challenge = "x" }"#,
            r#"{ kind = "echo", query = "c", extra = 1 }"#,
        ] {
            let keys = keys(text);
            assert_eq!(keys.len(), 1, "{text}");
            assert!(
                keys[0].starts_with("sources.s.handshake"),
                "{text}: {keys:?}"
            );
        }
    }

    #[test]
    fn echo_needs_exactly_one_well_formed_place() {
        assert_eq!(keys(r#"{ kind = "echo" }"#), ["sources.s.handshake.query"]);
        assert_eq!(
            keys(r#"{ kind = "echo", query = "c", json_pointer = "/c" }"#),
            ["sources.s.handshake.json_pointer"]
        );
        assert_eq!(
            keys(r#"{ kind = "echo", query = "" }"#),
            ["sources.s.handshake.query"]
        );
        assert_eq!(
            keys(r#"{ kind = "echo", json_pointer = "challenge" }"#),
            ["sources.s.handshake.json_pointer"]
        );
        assert_eq!(
            keys(r#"{ kind = "echo", query = "c", when = { pointer = "type", equals = "v" } }"#),
            [
                "sources.s.handshake.when",
                "sources.s.handshake.when.pointer"
            ]
        );
    }

    #[test]
    fn query_kinds_are_known() {
        let i = Integration::parse(&source(r#"{ kind = "microsoft_graph" }"#), &env).expect("ok");
        assert!(
            i.sources["s"]
                .handshake
                .as_ref()
                .is_some_and(Handshake::reads_query)
        );
        let i = Integration::parse(&source(r#"{ kind = "slack" }"#), &env).expect("ok");
        assert!(
            !i.sources["s"]
                .handshake
                .as_ref()
                .is_some_and(Handshake::reads_query)
        );
    }
}
