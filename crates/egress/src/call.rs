//! One partner call: send the outbound request, read the capped response, and on an OAuth 2.0
//! connection retry once with a fresh token after a 401.

use bytes::{Bytes, BytesMut};
use hookyard_proto::egress::v1::{CallRequest, CallResponse, Header};
use http::{HeaderValue, StatusCode, header::AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    Error, MAX_RESPONSE_BODY_BYTES,
    connection::{Auth, Connection},
    guard,
    request::Outbound,
    token::Tokens,
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
}

/// Makes the call `call` describes on `connection`.
pub(crate) async fn perform(
    connection: &Connection,
    tokens: &Tokens,
    call: CallRequest,
) -> Result<CallResponse, Error> {
    let outbound = Outbound::new(connection, call)?;
    guard::check(&outbound.url)?;
    if !matches!(connection.auth, Auth::OAuth2) {
        return Ok(send(connection, &outbound, None).await?.into_response(1));
    }
    let token = tokens.get(&connection.name).await?;
    let first = send(connection, &outbound, Some(&token)).await?;
    if first.status != StatusCode::UNAUTHORIZED {
        return Ok(first.into_response(1));
    }
    // The token may have been revoked before its expiry: drop it (only if still cached, so a
    // fresher one fetched meanwhile survives) and try once more with whatever is current.
    tracing::info!(
        connection = connection.name,
        "partner refused the token, retrying with a fresh one"
    );
    tokens.invalidate(&connection.name, &token).await?;
    let fresh = tokens.get(&connection.name).await?;
    Ok(send(connection, &outbound, Some(&fresh))
        .await?
        .into_response(2))
}

async fn send(
    connection: &Connection,
    outbound: &Outbound,
    token: Option<&SecretString>,
) -> Result<Answer, Error> {
    let mut headers = outbound.headers.clone();
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
    let too_large = || Error::ResponseTooLarge {
        connection: connection.name.clone(),
        limit: MAX_RESPONSE_BODY_BYTES,
    };
    if response
        .content_length()
        .is_some_and(|len| len > MAX_RESPONSE_BODY_BYTES as u64)
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
        if body.len() + chunk.len() > MAX_RESPONSE_BODY_BYTES {
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
