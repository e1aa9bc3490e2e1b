//! The HTTP client of one connection: the guarded DNS resolver, the redirect policy, TLS
//! (trusted CAs, client certificate), the timeout, and no proxy.

use std::sync::Arc;

use hookyard_core::config::{CaMode, Connection as Config, ConnectionAuth};
use reqwest::{Certificate, Identity, redirect};

use crate::{guard::Guard, resolve::GuardedResolver};

/// A connection's HTTP client cannot be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A TLS file or key is missing or unreadable (the message never quotes a key).
    #[error("connection {connection}: {what}: {detail}")]
    Tls {
        /// Connection name.
        connection: String,
        /// The key, e.g. `tls.ca`.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The HTTP client could not be built.
    #[error("connection {connection}: cannot build its HTTP client")]
    HttpClient {
        /// Connection name.
        connection: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Builds the client of connection `name`, whose every address `guard` checks.
pub fn build(
    name: &str,
    config: &Config,
    guard: Arc<Guard>,
) -> Result<reqwest::Client, ClientError> {
    builder(name, config, guard)?
        .build()
        .map_err(|source| ClientError::HttpClient {
            connection: name.to_owned(),
            source,
        })
}

/// [`build`]'s settings, for a caller that changes some before building (the token service
/// follows no redirects and has its own timeout for token requests).
pub fn builder(
    name: &str,
    config: &Config,
    guard: Arc<Guard>,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(config.timeout)
        .dns_resolver(Arc::new(GuardedResolver::new(guard.clone())))
        .redirect(redirects(config, guard))
        // Where a call goes is decided by the connection alone, not by HTTP_PROXY and friends.
        .no_proxy();
    if let Some(tls) = &config.tls {
        let tls_error = |what: &'static str, detail: String| ClientError::Tls {
            connection: name.to_owned(),
            what,
            detail,
        };
        if let Some(path) = &tls.ca {
            let pem = std::fs::read(path).map_err(|e| {
                tls_error(
                    "tls.ca",
                    format!("cannot read {}: {}", path.display(), e.kind()),
                )
            })?;
            let certificates = Certificate::from_pem_bundle(&pem).map_err(|_| {
                tls_error("tls.ca", format!("{} is not a PEM bundle", path.display()))
            })?;
            if certificates.is_empty() {
                return Err(tls_error(
                    "tls.ca",
                    format!("{} holds no certificate", path.display()),
                ));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if tls.ca_mode == CaMode::Replace {
            builder = builder.tls_built_in_root_certs(false);
        }
        if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
            let mut pem = std::fs::read(cert).map_err(|e| {
                tls_error(
                    "tls.client_cert",
                    format!("cannot read {}: {}", cert.display(), e.kind()),
                )
            })?;
            pem.push(b'\n');
            pem.extend_from_slice(key.expose().as_bytes());
            pem.push(b'\n');
            // The error is not kept: it could quote the key.
            let identity = Identity::from_pem(&pem).map_err(|_| {
                tls_error(
                    "tls.client_key",
                    "client_cert and client_key are not a PEM certificate and its private key"
                        .to_owned(),
                )
            })?;
            builder = builder.identity(identity);
        }
    }
    Ok(builder)
}

/// The guard of a connection: the SSRF rules with its `allow_private` ranges lifted; `None`
/// when a range does not parse (the integration file's check reports it).
pub fn guard(config: &Config) -> Option<Arc<Guard>> {
    let allow = config
        .allow_private
        .iter()
        .map(|text| hookyard_core::config::parse_cidr(text).ok())
        .collect::<Option<Vec<_>>>()?;
    Some(Arc::new(Guard::new(allow)))
}

/// No redirects unless `follow_redirects` allows some; then every hop's literal address is
/// checked by the guard (names are checked by the resolver when the hop connects). A
/// connection with `header` auth follows only redirects on its own host: the HTTP client drops
/// `Authorization` on a cross-host hop but not custom headers, which would carry its keys.
fn redirects(config: &Config, guard: Arc<Guard>) -> redirect::Policy {
    let max = config.follow_redirects as usize;
    if max == 0 {
        return redirect::Policy::none();
    }
    let same_host_only = matches!(config.auth, ConnectionAuth::Header { .. });
    redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > max {
            return attempt.stop();
        }
        let cross_host = attempt.previous().last().is_some_and(|previous| {
            previous.host() != attempt.url().host()
                || previous.port_or_known_default() != attempt.url().port_or_known_default()
        });
        if same_host_only && cross_host {
            return attempt.stop();
        }
        match guard.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(refusal),
        }
    })
}
