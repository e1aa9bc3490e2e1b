//! One partner call: check the destination, then attempt the request — within the
//! connection's rate and concurrency limits and while its breaker admits it — retrying what
//! `retry` allows, retrying once with a fresh token after a 401 on an OAuth 2.0 connection,
//! and auditing every attempt.

use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument as _;

use bytes::{Bytes, BytesMut};
use hookyard_proto::egress::v1::{CallRequest, CallResponse, Header};
use http::{HeaderValue, StatusCode, header::AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    Error,
    audit::{self, Audit},
    connection::{Auth, Connection},
    request::Outbound,
    retry,
    token::TokenClient,
};

/// A partner's answer.
struct Answer {
    status: StatusCode,
    headers: Vec<Header>,
    body: Bytes,
}

impl Answer {
    fn into_response(self, attempts: u32) -> CallResponse {
        CallResponse {
            status: u32::from(self.status.as_u16()),
            headers: self.headers,
            body: self.body.into(),
            attempts,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

/// What a call needs besides its connection.
pub(crate) struct CallContext<'a> {
    pub tokens: &'a TokenClient,
    pub audit: Option<&'a Audit>,
}

/// Makes the call `call` describes on `connection`; `max_attempts` overrides the connection's
/// retry policy (1 for a connection test).
pub(crate) async fn perform(
    connection: &Connection,
    services: &CallContext<'_>,
    call: CallRequest,
    max_attempts: Option<u32>,
) -> Result<CallResponse, Error> {
    let event_id = audit::event_id(&call.event_id, &call.idempotency_key).map(str::to_owned);
    let handler = (!call.handler.is_empty()).then(|| call.handler.clone());
    let repeatable = retry::repeatable(
        &call.method.parse().unwrap_or_default(),
        !call.idempotency_key.is_empty(),
    );
    let outbound = Outbound::new(connection, call)?;
    let audited = services.audit.map(|audit| Audited {
        audit,
        connection: &connection.name,
        method: outbound.method.as_str(),
        url: audit::redact(&outbound.url, connection.auth_parameter()),
        event_id: event_id.as_deref(),
        handler: handler.as_deref(),
    });
    if let Err(refusal) = connection.guard.check_url(&outbound.url) {
        // Audited as an attempt that never left, so refusals show up next to the calls.
        if let Some(audited) = &audited {
            let error = format!("{:?}", tonic::Code::PermissionDenied);
            audited.record(1, None, Some(error), Instant::now(), SystemTime::now());
        }
        return Err(Error::Refused(refusal.reason));
    }
    let allowed = if repeatable {
        max_attempts.unwrap_or(connection.retry.max_attempts).max(1)
    } else {
        1
    };
    let token = match connection.auth {
        Auth::OAuth2 => Some(services.tokens.get(&connection.name).await?),
        _ => None,
    };
    let attempts = Attempts {
        connection,
        tokens: services.tokens,
        outbound: &outbound,
        audited: audited.as_ref(),
    };
    attempts.run(token, repeatable, allowed).await
}

/// The attempts of one checked call, which share everything but their number and token.
struct Attempts<'a> {
    connection: &'a Connection,
    tokens: &'a TokenClient,
    outbound: &'a Outbound,
    audited: Option<&'a Audited<'a>>,
}

impl Attempts<'_> {
    /// Attempts the call until an answer is final: up to `allowed` attempts when the request
    /// is `repeatable`, one more after a 401 with `token`, and none while the breaker is open
    /// (the last outcome, if any, is returned then).
    async fn run(
        &self,
        mut token: Option<SecretString>,
        repeatable: bool,
        mut allowed: u32,
    ) -> Result<CallResponse, Error> {
        let connection = self.connection;
        let mut refreshed = false;
        let mut last: Option<Result<Answer, Error>> = None;
        let mut attempt = 0;
        loop {
            if let Err(retry_after) = connection.limits.breaker.admit() {
                return match last {
                    Some(outcome) => outcome.map(|answer| answer.into_response(attempt)),
                    None => Err(Error::CircuitOpen {
                        connection: connection.name.clone(),
                        retry_after,
                    }),
                };
            }
            attempt += 1;
            let outcome = self.attempt(attempt, token.as_ref()).await;
            if let (Ok(answer), Some(current)) = (&outcome, &token)
                && answer.status == StatusCode::UNAUTHORIZED
                && !refreshed
            {
                // This attempt does not count against the retry policy.
                token = Some(self.renew(current).await?);
                refreshed = true;
                allowed += 1;
                continue;
            }
            match retry_wait(&connection.retry, attempt, &outcome) {
                Some(wait) if repeatable && attempt < allowed => {
                    tracing::info!(
                        connection = connection.name,
                        attempt,
                        status = outcome.as_ref().ok().map(|a| a.status.as_u16()),
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "retrying partner call"
                    );
                    last = Some(outcome);
                    tokio::time::sleep(wait).await;
                }
                _ => return outcome.map(|answer| answer.into_response(attempt)),
            }
        }
    }

    /// Sends attempt number `attempt` within the connection's limits (the permit is held for
    /// the request alone), then audits it and tells the breaker.
    async fn attempt(&self, attempt: u32, token: Option<&SecretString>) -> Result<Answer, Error> {
        let permit = self.connection.limits.wait_turn().await;
        let (started, at) = (Instant::now(), SystemTime::now());
        let span = tracing::info_span!(
            "attempt",
            attempt,
            http.response.status_code = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let outcome = send(self.connection, self.outbound, token)
            .instrument(span.clone())
            .await;
        match &outcome {
            Ok(answer) => span.record("http.response.status_code", answer.status.as_u16()),
            Err(error) => span.record("error", tracing::field::debug(error.code())),
        };
        drop(permit);
        if let Some(audited) = self.audited {
            let status = outcome.as_ref().ok().map(|a| a.status.as_u16());
            let error = outcome.as_ref().err().map(|e| format!("{:?}", e.code()));
            audited.record(attempt, status, error, started, at);
        }
        tell_breaker(self.connection, &outcome);
        outcome
    }

    /// A token to replace `refused`, which the partner answered 401 to: it may have been
    /// revoked before its expiry. It is dropped only if still cached, so a fresher one fetched
    /// meanwhile survives, and whatever is current then is used.
    async fn renew(&self, refused: &SecretString) -> Result<SecretString, Error> {
        let name = &self.connection.name;
        tracing::info!(
            connection = name,
            "partner refused the token, retrying with a fresh one"
        );
        self.tokens.invalidate(name, refused).await?;
        self.tokens.get(name).await
    }
}

/// What every audit record of one call shares.
struct Audited<'a> {
    audit: &'a Audit,
    connection: &'a str,
    method: &'a str,
    url: String,
    event_id: Option<&'a str>,
    handler: Option<&'a str>,
}

impl Audited<'_> {
    /// Records attempt number `attempt`, started at `started` (`at` on the wall clock).
    fn record(
        &self,
        attempt: u32,
        status: Option<u16>,
        error: Option<String>,
        started: Instant,
        at: SystemTime,
    ) {
        self.audit.record(&audit::Record {
            connection: self.connection,
            method: self.method,
            url: self.url.clone(),
            attempt,
            event_id: self.event_id,
            handler: self.handler,
            status,
            error,
            latency_ms: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
            at_ms: audit::epoch_ms(at),
        });
    }
}

/// Tells the breaker about the partner only: no answer or a 5xx is a failure, any other answer
/// a success; a refused destination or an unusable token says nothing about it.
fn tell_breaker(connection: &Connection, outcome: &Result<Answer, Error>) {
    let healthy = match outcome {
        Ok(answer) => Some(!answer.status.is_server_error()),
        Err(Error::Timeout { .. } | Error::Unreachable { .. }) => Some(false),
        Err(Error::ResponseTooLarge { .. }) => Some(true),
        Err(_) => None,
    };
    if let Some(healthy) = healthy
        && connection.limits.breaker.record(healthy)
    {
        tracing::warn!(connection = connection.name, "circuit breaker opened");
    }
}

/// How long to wait before retrying after `outcome`, `None` when it is not retried: the
/// partner's `Retry-After` up to the policy's cap (a longer one ends the call), else backoff.
fn retry_wait(
    policy: &hookyard_core::config::Retry,
    attempt: u32,
    outcome: &Result<Answer, Error>,
) -> Option<Duration> {
    match outcome {
        Ok(answer) if retry::retryable_status(answer.status.as_u16()) => {
            match answer
                .header("retry-after")
                .and_then(|v| retry::retry_after(v, SystemTime::now()))
            {
                Some(asked) if asked > policy.max_retry_after => None,
                Some(asked) => Some(asked),
                None => Some(retry::backoff(policy, attempt)),
            }
        }
        Err(Error::Timeout { .. } | Error::Unreachable { .. }) => {
            Some(retry::backoff(policy, attempt))
        }
        _ => None,
    }
}

async fn send(
    connection: &Connection,
    outbound: &Outbound,
    token: Option<&SecretString>,
) -> Result<Answer, Error> {
    let mut headers = outbound.headers.clone();
    // The partner sees the attempt as the parent of whatever it traces (nothing when off).
    hookyard_core::trace::to_http(&tracing::Span::current(), &mut headers);
    if let Some(token) = token {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| Error::UnusableToken(connection.name.clone()))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    let mut request = connection
        .client
        .request(outbound.method.clone(), outbound.url.clone())
        .headers(headers);
    // An empty body is sent only where one is expected, so a GET carries no Content-Length.
    let expects_body = matches!(outbound.method.as_str(), "POST" | "PUT" | "PATCH");
    if expects_body || !outbound.body.is_empty() {
        request = request.body(outbound.body.clone());
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| Error::transport(&connection.name, e))?;
    let limit = connection.max_response_bytes;
    let too_large = || Error::ResponseTooLarge {
        connection: connection.name.clone(),
        limit,
    };
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| Header {
            name: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect();
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::transport(&connection.name, e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    tracing::debug!(
        connection = connection.name,
        status = status.as_u16(),
        "partner answered"
    );
    Ok(Answer {
        status,
        headers,
        body: body.freeze(),
    })
}
