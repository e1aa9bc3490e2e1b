//! Connection profiles, built once at start: where a partner is, the HTTP client that reaches
//! it (`client`), the credentials put on each request, the SSRF guard, and its retry policy,
//! limits and breaker (`limits`).

use std::{collections::BTreeMap, sync::Arc};

use base64::Engine as _;
use hookyard_core::{
    Integration,
    config::{ConnectionAuth, Retry},
};
use http::{HeaderName, HeaderValue, header::AUTHORIZATION};
use secrecy::SecretString;
use url::Url;

use hookyard_outbound::{Guard, client};

use crate::{Error, limits::Limits};

/// How a connection authenticates, ready to apply.
pub(crate) enum Auth {
    /// Nothing to add.
    None,
    /// Headers set on every request (`basic` is an `Authorization` header), marked sensitive.
    Headers(Vec<(HeaderName, HeaderValue)>),
    /// A query parameter appended to every URL.
    Query { name: String, value: SecretString },
    /// A bearer token from the token service.
    OAuth2,
}

/// One partner API.
pub(crate) struct Connection {
    pub name: String,
    pub base: Url,
    pub client: reqwest::Client,
    pub auth: Auth,
    pub guard: Arc<Guard>,
    pub retry: Retry,
    pub limits: Limits,
    pub max_response_bytes: usize,
}

impl Connection {
    /// The query parameter that carries the connection's API key, if any.
    pub(crate) fn auth_parameter(&self) -> Option<&str> {
        match &self.auth {
            Auth::Query { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// Every connection of the integration file, by name.
pub(crate) struct Connections(BTreeMap<String, Connection>);

/// The connections in use, replaced whole when the integration file is reloaded; a call holds
/// the set it started with to its end.
pub(crate) struct Live(std::sync::RwLock<Arc<Connections>>);

impl Live {
    pub(crate) fn new(connections: Connections) -> Self {
        Self(std::sync::RwLock::new(Arc::new(connections)))
    }

    /// A snapshot; the lock is held only to clone the `Arc`.
    pub(crate) fn current(&self) -> Arc<Connections> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes `connections` the set every call started from now on uses.
    pub(crate) fn replace(&self, connections: Connections) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(connections);
    }
}

impl Connections {
    pub(crate) fn new(integration: &Integration) -> Result<Self, Error> {
        let mut connections = BTreeMap::new();
        for (name, config) in &integration.connections {
            let base = Url::parse(&config.base_url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| Error::BaseUrl(name.clone()))?;
            let guard = client::guard(config).ok_or_else(|| Error::AllowPrivate(name.clone()))?;
            let connection = Connection {
                name: name.clone(),
                base,
                client: client::build(name, config, guard.clone())?,
                auth: auth(name, &config.auth)?,
                guard,
                retry: config.retry.clone(),
                limits: Limits::new(config),
                max_response_bytes: usize::try_from(config.max_response_bytes)
                    .unwrap_or(usize::MAX)
                    .min(crate::MAX_RESPONSE_BODY_BYTES),
            };
            connections.insert(name.clone(), connection);
        }
        Ok(Self(connections))
    }

    pub(crate) fn get(&self, name: &str) -> Result<&Connection, Error> {
        self.0
            .get(name)
            .ok_or_else(|| Error::UnknownConnection(name.to_owned()))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Names of the connections that need the token service.
    pub(crate) fn oauth2(&self) -> impl Iterator<Item = &str> {
        self.0
            .values()
            .filter(|c| matches!(c.auth, Auth::OAuth2))
            .map(|c| c.name.as_str())
    }
}

fn auth(connection: &str, auth: &ConnectionAuth) -> Result<Auth, Error> {
    let invalid = |what| Error::Auth {
        connection: connection.to_owned(),
        what,
    };
    let sensitive = |text: &str| {
        let mut value = HeaderValue::from_str(text).map_err(|_| invalid("header value"))?;
        value.set_sensitive(true);
        Ok::<_, Error>(value)
    };
    Ok(match auth {
        ConnectionAuth::None => Auth::None,
        ConnectionAuth::Basic { username, password } => {
            let credentials = base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose()));
            Auth::Headers(vec![(
                AUTHORIZATION,
                sensitive(&format!("Basic {credentials}"))?,
            )])
        }
        ConnectionAuth::Header { headers } => Auth::Headers(
            headers
                .iter()
                .map(|(name, value)| {
                    let name = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| invalid("header name"))?;
                    Ok((name, sensitive(value.expose())?))
                })
                .collect::<Result<_, Error>>()?,
        ),
        ConnectionAuth::Query { name, value } => {
            if name.is_empty() {
                return Err(invalid("query parameter name"));
            }
            Auth::Query {
                name: name.clone(),
                value: SecretString::from(value.expose().to_owned()),
            }
        }
        ConnectionAuth::OAuth2ClientCredentials { .. }
        | ConnectionAuth::OAuth2AuthorizationCode { .. } => Auth::OAuth2,
    })
}
