//! Connection profiles, built once at start: where a partner is, how long a call may take, the
//! HTTP client that reaches it, and the credentials put on each request.

use std::{collections::BTreeMap, time::Duration};

use base64::Engine as _;
use hookyard_core::{Integration, config::ConnectionAuth};
use http::{HeaderName, HeaderValue, header::AUTHORIZATION};
use secrecy::SecretString;
use url::Url;

use crate::Error;

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
}

/// Every connection of the integration file, by name.
pub(crate) struct Connections(BTreeMap<String, Connection>);

impl Connections {
    pub(crate) fn new(integration: &Integration) -> Result<Self, Error> {
        let mut connections = BTreeMap::new();
        for (name, config) in &integration.connections {
            let base = Url::parse(&config.base_url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| Error::BaseUrl(name.clone()))?;
            let connection = Connection {
                name: name.clone(),
                base,
                client: client(config.timeout).map_err(|source| Error::HttpClient {
                    connection: name.clone(),
                    source,
                })?,
                auth: auth(name, &config.auth)?,
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

/// The HTTP client of one connection. TLS client identities and trusted CAs, and the resolver
/// of the SSRF guard, are added here when they come.
fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        // A redirect could lead the credentials, or the call, anywhere: the caller sees the 3xx.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
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
        ConnectionAuth::OAuth2ClientCredentials { .. } => Auth::OAuth2,
    })
}
