//! Checks that need the whole file (cross references, value rules), secret resolution, and
//! mapping keys to lines.

use toml::de::{DeArray, DeTable, DeValue};

use super::{
    ConnectionAuth, ContentPart, EnvLookup, HmacSignature, Integration, Problem, SecretScope,
    Signature, SourceAuth, content_parts,
};

pub(super) const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

pub(super) fn push(problems: &mut Vec<Problem>, key: String, message: impl Into<String>) {
    problems.push(Problem {
        key,
        message: message.into(),
        line: None,
    });
}

/// Names become NATS subject tokens and consumer names: keep them to a safe alphabet.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_url(problems: &mut Vec<Problem>, key: String, text: &str) {
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(_) => push(problems, key, "must be an http or https URL with a host"),
        Err(e) => push(problems, key, format!("invalid URL: {e}")),
    }
}

/// Checks the rules that need the whole file, section by section in the order the file is
/// read, so problems come out in a stable, top-to-bottom order.
pub(super) fn check(i: &Integration, problems: &mut Vec<Problem>) {
    check_sources(i, problems);
    check_routes(i, problems);
    super::validate_handlers::check(i, problems);
    check_connections(i, problems);
}

/// Checks every source. Listen paths are compared across sources, as two sources on one path
/// would make the second unreachable.
fn check_sources(i: &Integration, problems: &mut Vec<Problem>) {
    let mut paths: Vec<(&str, &String)> = Vec::new();
    for (name, source) in &i.sources {
        let key = format!("sources.{name}");
        if !valid_name(name) {
            push(
                problems,
                key.clone(),
                "source names may use letters, digits, '-' and '_' (at most 64)",
            );
        }
        if let Some(poll) = &source.poll {
            check_poll_source(problems, &key, source);
            super::poll::check(&mut |k, m| push(problems, k, m), &key, poll, &i.connections);
            continue;
        }
        let Some(path) = &source.path else {
            push(
                problems,
                format!("{key}.path"),
                "is required (or `poll` for a source that polls a partner API)",
            );
            continue;
        };
        check_path(problems, &key, path, &paths);
        paths.push((name, path));
        check_listen_source(problems, &key, source);
    }
}

/// A listen path must be absolute and not taken by an earlier source (`seen`), since the
/// ingress finds a request's source by its path alone.
fn check_path(problems: &mut Vec<Problem>, key: &str, path: &str, seen: &[(&str, &String)]) {
    if !path.starts_with('/') {
        push(problems, format!("{key}.path"), "must start with '/'");
    } else if let Some((other, _)) = seen.iter().find(|(_, p)| p.as_str() == path) {
        push(
            problems,
            format!("{key}.path"),
            format!("path already used by source {other}"),
        );
    }
}

/// Checks what a source with a listen endpoint accepts and how it authenticates callers; the
/// rules of its parts live next to their types.
fn check_listen_source(problems: &mut Vec<Problem>, key: &str, source: &super::Source) {
    check_methods(problems, key, &source.methods);
    if source.max_body_bytes == 0 {
        push(
            problems,
            format!("{key}.max_body_bytes"),
            "must be greater than 0",
        );
    }
    super::inbound::check(problems, key, source);
    if let SourceAuth::Basic { username, .. } = &source.auth
        && (username.is_empty() || username.contains(':'))
    {
        push(
            problems,
            format!("{key}.auth.username"),
            "must be non-empty and contain no ':'",
        );
    }
    if let Some(signature) = &source.signature {
        check_signature(problems, &format!("{key}.signature"), signature);
    }
    if let Some(handshake) = &source.handshake {
        super::handshake::check(problems, &format!("{key}.handshake"), handshake);
    }
    super::reply::check_reply(problems, &format!("{key}.reply"), &source.reply);
    check_dedup_window(problems, key, source);
}

/// A window longer than the bucket keeps an id would promise a dedup that cannot happen: the
/// record is gone before the window ends.
fn check_dedup_window(problems: &mut Vec<Problem>, key: &str, source: &super::Source) {
    let longest = crate::streams::StreamLimits::DEFAULT_DEDUP_WINDOW;
    if source.dedup_window.is_some_and(|window| window > longest) {
        push(
            problems,
            format!("{key}.dedup_window"),
            format!(
                "must be at most {}, how long the HOOKYARD_DEDUP bucket keeps an event id (\"0s\" turns it off)",
                humantime::format_duration(longest)
            ),
        );
    }
}

/// A source must accept at least one method, each a known one in upper case (HTTP methods
/// are case-sensitive, so `post` would never match a request).
fn check_methods(problems: &mut Vec<Problem>, key: &str, methods: &[String]) {
    if methods.is_empty() {
        push(
            problems,
            format!("{key}.methods"),
            "must list at least one method",
        );
    }
    for (n, m) in methods.iter().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            push(
                problems,
                format!("{key}.methods[{n}]"),
                format!(
                    "unknown HTTP method {m:?} (use upper case: {})",
                    METHODS.join(", ")
                ),
            );
        }
    }
}

/// Checks every route.
fn check_routes(i: &Integration, problems: &mut Vec<Problem>) {
    for (n, route) in i.routes.iter().enumerate() {
        check_route(i, problems, &format!("routes[{n}]"), route);
    }
}

/// A route must match something and lead somewhere: the source and handlers it names must
/// exist, or its events would be dropped at run time instead of refused at load.
fn check_route(i: &Integration, problems: &mut Vec<Problem>, key: &str, route: &super::Route) {
    if route.event.is_empty() {
        push(
            problems,
            format!("{key}.event"),
            "must not be empty (use \"*\" for every event)",
        );
    }
    if let Some(source) = &route.source
        && !i.sources.contains_key(source)
    {
        push(
            problems,
            format!("{key}.source"),
            format!("no source named {source:?}"),
        );
    }
    if route.handlers.is_empty() {
        push(
            problems,
            format!("{key}.handlers"),
            "must name at least one handler",
        );
    }
    if let Some(when) = &route.when {
        super::validate_handlers::check_condition(problems, format!("{key}.when"), when);
    }
    for (h, handler) in route.handlers.iter().enumerate() {
        if !i.handlers.contains_key(handler) {
            push(
                problems,
                format!("{key}.handlers[{h}]"),
                format!("no handler named {handler:?}"),
            );
        }
    }
}

/// Checks every connection.
fn check_connections(i: &Integration, problems: &mut Vec<Problem>) {
    for (name, conn) in &i.connections {
        check_connection(problems, name, conn);
    }
}

/// Checks one connection: its name (a metric label and subject token), where it calls, and
/// its auth; the outbound and OAuth 2.0 client rules live next to their types.
fn check_connection(problems: &mut Vec<Problem>, name: &str, conn: &super::Connection) {
    let key = format!("connections.{name}");
    if !valid_name(name) {
        push(
            problems,
            key.clone(),
            "connection names may use letters, digits, '-' and '_' (at most 64)",
        );
    }
    check_url(problems, format!("{key}.base_url"), &conn.base_url);
    if conn.timeout.is_zero() {
        push(problems, format!("{key}.timeout"), "must be greater than 0");
    }
    super::outbound::check(&mut |k, m| push(problems, k, m), &key, conn);
    check_client_credentials(problems, &key, &conn.auth);
    super::oauth2::check_client(
        &mut |k, m| push(problems, k, m),
        &format!("{key}.auth"),
        &conn.auth,
    );
    check_authorization_code(problems, &key, &conn.auth);
}

/// An `oauth2_client_credentials` connection needs a token endpoint and a client to ask it
/// for; anything else is left alone.
fn check_client_credentials(problems: &mut Vec<Problem>, key: &str, auth: &ConnectionAuth) {
    let ConnectionAuth::OAuth2ClientCredentials {
        token_url,
        client_id,
        ..
    } = auth
    else {
        return;
    };
    check_url(problems, format!("{key}.auth.token_url"), token_url);
    if client_id.is_empty() {
        push(
            problems,
            format!("{key}.auth.client_id"),
            "must not be empty",
        );
    }
}

/// An `oauth2_authorization_code` connection needs its endpoints, a client, and a
/// `redirect_uri` that lands on the token service's consent callback, or the person who
/// consents is sent somewhere that cannot finish the flow; anything else is left alone.
fn check_authorization_code(problems: &mut Vec<Problem>, key: &str, auth: &ConnectionAuth) {
    let ConnectionAuth::OAuth2AuthorizationCode {
        authorize_url,
        token_url,
        client_id,
        redirect_uri,
        ..
    } = auth
    else {
        return;
    };
    check_url(problems, format!("{key}.auth.authorize_url"), authorize_url);
    check_url(problems, format!("{key}.auth.token_url"), token_url);
    check_url(problems, format!("{key}.auth.redirect_uri"), redirect_uri);
    if client_id.is_empty() {
        push(
            problems,
            format!("{key}.auth.client_id"),
            "must not be empty",
        );
    }
    if !is_consent_callback(redirect_uri) {
        push(
            problems,
            format!("{key}.auth.redirect_uri"),
            format!(
                "must be a URL whose path ends in {} (the token service's consent callback), without a query",
                super::OAUTH2_CALLBACK_PATH
            ),
        );
    }
}

/// Whether `redirect_uri` is the consent callback without a query. An unparsable URL passes
/// here, as `check_url` reports it already.
fn is_consent_callback(redirect_uri: &str) -> bool {
    url::Url::parse(redirect_uri).map_or(true, |u| {
        u.path().ends_with(super::OAUTH2_CALLBACK_PATH) && u.query().is_none()
    })
}

/// A polling source has no listen endpoint: the keys that only describe one are refused, so
/// a misplaced key is not silently ignored.
fn check_poll_source(problems: &mut Vec<Problem>, key: &str, source: &super::Source) {
    let listen_only = [
        ("path", source.path.is_some()),
        ("auth", !matches!(source.auth, SourceAuth::None)),
        ("signature", source.signature.is_some()),
        ("handshake", source.handshake.is_some()),
        ("dedup_key", source.dedup_key.is_some()),
        ("dedup_window", source.dedup_window.is_some()),
        ("rate_limit", source.rate_limit.is_some()),
        ("allow_ips", !source.allow_ips.is_empty()),
        ("trusted_proxies", !source.trusted_proxies.is_empty()),
        ("content_types", !source.content_types.is_empty()),
    ];
    for (field, set) in listen_only {
        if set {
            push(
                problems,
                format!("{key}.{field}"),
                "applies to a listen endpoint; a source with `poll` has none (its records are deduplicated by `poll.record_id`)",
            );
        }
    }
    if matches!(source.event_type, Some(crate::expr::Expr::Header(_))) {
        push(
            problems,
            format!("{key}.event_type"),
            "a polled record has no request headers: use a fixed string or { jq = \"…\" } on the record",
        );
    }
}

fn check_signature(problems: &mut Vec<Problem>, key: &str, signature: &Signature) {
    if signature.secrets().is_empty() {
        push(
            problems,
            format!("{key}.secrets"),
            "must list at least one secret",
        );
    }
    let tolerance = match signature {
        Signature::StandardWebhooks { tolerance, .. }
        | Signature::Stripe { tolerance, .. }
        | Signature::Slack { tolerance, .. }
        | Signature::Hmac(HmacSignature { tolerance, .. }) => Some(tolerance),
        Signature::Github { .. } | Signature::Shopify { .. } => None,
    };
    if tolerance.is_some_and(|t| t.is_zero()) {
        push(
            problems,
            format!("{key}.tolerance"),
            "must be greater than 0",
        );
    }
    let Signature::Hmac(hmac) = signature else {
        return;
    };
    let mut check_header = |field: &str, name: &str| {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            push(
                problems,
                format!("{key}.{field}"),
                "must be a non-empty, valid HTTP header name",
            );
        }
    };
    check_header("header", &hmac.header);
    if let Some(name) = &hmac.timestamp_header {
        check_header("timestamp_header", name);
    }
    if let Some(name) = &hmac.id_header {
        check_header("id_header", name);
    }
    let content_key = format!("{key}.content");
    let parts = match content_parts(&hmac.content) {
        Ok(parts) => parts,
        Err(message) => return push(problems, content_key, message),
    };
    if !parts.contains(&ContentPart::Body) {
        push(problems, content_key.clone(), "must sign {body}");
    }
    let signs_timestamp = parts.contains(&ContentPart::Timestamp);
    match (signs_timestamp, &hmac.timestamp_header) {
        (true, None) => push(
            problems,
            content_key.clone(),
            "{timestamp} needs timestamp_header",
        ),
        // An unsigned timestamp can be rewritten by anyone replaying a request.
        (false, Some(_)) => push(
            problems,
            content_key.clone(),
            "must sign {timestamp} when timestamp_header is set",
        ),
        _ => {}
    }
    if parts.contains(&ContentPart::Id) && hmac.id_header.is_none() {
        push(problems, content_key, "{id} needs id_header");
    }
}

pub(super) fn resolve_secrets(
    i: &mut Integration,
    env: EnvLookup<'_>,
    scope: SecretScope,
    problems: &mut Vec<Problem>,
) {
    let sources = matches!(scope, SecretScope::All | SecretScope::Sources);
    let connections = matches!(scope, SecretScope::All | SecretScope::Connections);
    let oauth2_clients = connections || scope == SecretScope::OAuth2Clients;
    if scope == SecretScope::All {
        resolve_step_env(i, env, None, problems);
    }
    let mut resolve = |key: String, secret: &mut super::Secret| {
        if let Err(e) = secret.resolve(env) {
            push(problems, key, e.to_string());
        }
    };
    for (name, source) in i.sources.iter_mut().filter(|_| sources) {
        for (field, secret) in source.auth.secrets_mut() {
            resolve(format!("sources.{name}.{field}"), secret);
        }
        if let Some(signature) = &mut source.signature {
            for (n, secret) in signature.secrets_mut().iter_mut().enumerate() {
                resolve(format!("sources.{name}.signature.secrets[{n}]"), secret);
            }
        }
        if let Some((field, secret)) = source.handshake.as_mut().and_then(|h| h.secret_mut()) {
            resolve(format!("sources.{name}.handshake.{field}"), secret);
        }
    }
    for (name, conn) in &mut i.connections {
        // The token service presents the client certificate of an OAuth 2.0 connection to its
        // authorization server, as egress does to the partner.
        let tls_key = connections || (oauth2_clients && conn.auth.is_oauth2());
        if let Some(client_key) = conn.tls.as_mut().and_then(|t| t.client_key.as_mut())
            && tls_key
        {
            resolve(format!("connections.{name}.tls.client_key"), client_key);
        }
        let key = format!("connections.{name}.auth");
        match &mut conn.auth {
            ConnectionAuth::None => {}
            ConnectionAuth::OAuth2ClientCredentials {
                client_secret,
                private_key_jwt,
                ..
            }
            | ConnectionAuth::OAuth2AuthorizationCode {
                client_secret,
                private_key_jwt,
                ..
            } => {
                if let (true, Some(secret)) = (oauth2_clients, client_secret) {
                    resolve(format!("{key}.client_secret"), secret);
                }
                if let (true, Some(jwt)) = (oauth2_clients, private_key_jwt) {
                    resolve(format!("{key}.private_key_jwt.key"), &mut jwt.key);
                }
            }
            _ if !connections => {}
            ConnectionAuth::Basic { password, .. } => resolve(format!("{key}.password"), password),
            ConnectionAuth::Header { headers } => {
                for (h, v) in headers.iter_mut() {
                    resolve(format!("{key}.headers.{h}"), v);
                }
            }
            ConnectionAuth::Query { value, .. } => resolve(format!("{key}.value"), value),
        }
    }
}

/// Resolves the secret references in the `env` of subprocess steps, of every handler or of
/// those named in `only` (a worker resolves its own handlers' only).
pub(super) fn resolve_step_env(
    i: &mut Integration,
    env: EnvLookup<'_>,
    only: Option<&[String]>,
    problems: &mut Vec<Problem>,
) {
    for (name, handler) in &mut i.handlers {
        if only.is_some_and(|names| !names.contains(name)) {
            continue;
        }
        for (s, step) in handler.steps.iter_mut().enumerate() {
            let super::Step::Subprocess(sub) = step else {
                continue;
            };
            for (var, value) in &mut sub.env {
                if let super::EnvValue::Secret(secret) = value
                    && let Err(e) = secret.resolve(env)
                {
                    push(
                        problems,
                        format!("handlers.{name}.steps[{s}].env.{var}"),
                        e.to_string(),
                    );
                }
            }
        }
    }
}

/// Formats a path reported by `serde_ignored` in this crate's key style (`a.b[0].c`).
pub(super) fn key_of(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_of(parent)),
        Path::Map { parent, key } => {
            let p = key_of(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_of(parent),
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(key: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        out.push(Seg::Key(name));
        while let Some((idx, after)) = rest.split_once(']') {
            if let Ok(i) = idx.parse() {
                out.push(Seg::Index(i));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// 1-based line of `key` in the file, or of its nearest ancestor that is there.
pub(super) fn locate(text: &str, key: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut table: &DeTable<'_> = root.get_ref();
    let mut array: Option<&DeArray<'_>> = None;
    let mut found = None;
    for seg in segments(key) {
        let value = match (seg, array) {
            (Seg::Key(k), None) => {
                let (name, value) = table.get_key_value(k)?;
                found = Some(line_of(text, name.span().start));
                value
            }
            (Seg::Index(i), Some(items)) => {
                let v = items.get(i)?;
                found = Some(line_of(text, v.span().start));
                v
            }
            _ => return found,
        };
        array = None;
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            DeValue::Array(items) => array = Some(items),
            _ => {}
        }
    }
    found
}

/// Key whose value contains byte `offset` of the file (the innermost one), for parse errors.
/// Tables opened by a `[header]` have no value span around their keys, so the search goes by
/// key positions: the last key before `offset` whose value reaches it, else the last key before it.
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    fn collect(value: &DeValue<'_>, key: &str, out: &mut Vec<(String, usize, usize)>) {
        match value {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    let path = if key.is_empty() {
                        k.get_ref().to_string()
                    } else {
                        format!("{key}.{}", k.get_ref())
                    };
                    out.push((path.clone(), k.span().start, v.span().end));
                    collect(v.get_ref(), &path, out);
                }
            }
            DeValue::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let path = format!("{key}[{i}]");
                    out.push((path.clone(), v.span().start, v.span().end));
                    collect(v.get_ref(), &path, out);
                }
            }
            _ => {}
        }
    }
    let root = DeTable::parse(text).ok()?;
    let mut entries = Vec::new();
    collect(&DeValue::Table(root.into_inner()), "", &mut entries);
    entries.retain(|(_, start, _)| *start <= offset);
    let enclosing = entries
        .iter()
        .filter(|(_, _, end)| *end >= offset)
        .max_by_key(|(_, start, _)| *start);
    enclosing
        .or_else(|| entries.iter().max_by_key(|(_, start, _)| *start))
        .map(|(key, _, _)| key.clone())
}

#[cfg(test)]
mod tests {
    use super::is_consent_callback;

    #[test]
    fn consent_callback_is_the_callback_path_without_a_query() {
        assert!(is_consent_callback("https://hooks.example/oauth/callback"));
        assert!(is_consent_callback(
            "http://127.0.0.1:8090/token/oauth/callback"
        ));
        assert!(!is_consent_callback(
            "https://hooks.example/oauth/callback?x=1"
        ));
        assert!(!is_consent_callback("https://hooks.example/oauth/other"));
        // Reported by check_url instead, so not twice.
        assert!(is_consent_callback("not a url"));
    }
}
