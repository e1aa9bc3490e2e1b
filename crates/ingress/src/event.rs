//! Turning an accepted request into an [`Envelope`]: raw bytes in, nothing re-serialised.
//!
//! The dedup key is the source's `dedup_key` expression when it yields a non-empty value, else
//! a hash of the body; the event id follows from (source, dedup key), so a sender's retry gets
//! the same id and is stored once. The body is parsed as JSON only when the dedup expression is
//! jq; the event type is left to the router. A delivery-id header that is not UTF-8 is refused
//! rather than read lossily: two different ids must never become one.

use bytes::Bytes;
use hookyard_core::{envelope, expr::Input};
use hookyard_proto::event::v1::{Envelope, Header};
use http::{HeaderMap, Method, Uri};

use crate::{Error, routes::SourceEntry};

/// What ingress knows about one request once it is authenticated and its body read.
pub(crate) struct Received<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    pub received_at_ms: i64,
}

/// Builds the envelope of an accepted request; refused when its delivery id is unreadable.
pub(crate) fn envelope(source: &SourceEntry, request: Received<'_>) -> Result<Envelope, Error> {
    let consumed = source.auth.consumed_header();
    let headers: Vec<Header> = request
        .headers
        .iter()
        // A credential ingress has verified is not event data, and the stream is replayable.
        .filter(|(name, _)| consumed != Some(*name))
        .map(|(name, value)| Header {
            name: name.as_str().to_owned(),
            value: value.as_bytes().to_vec(),
        })
        .collect();
    let dedup_key = dedup_key(source, &headers, &request.body, request.received_at_ms)?;
    Ok(Envelope {
        id: envelope::event_id(&source.name, &dedup_key),
        source: source.name.clone(),
        received_at_ms: request.received_at_ms,
        method: request.method.as_str().to_owned(),
        path: request.uri.path().to_owned(),
        query: source
            .auth
            .stored_query(request.uri.query().unwrap_or_default())
            .into_owned(),
        headers,
        body: request.body.to_vec(),
        dedup_key,
        ..Default::default()
    })
}

fn dedup_key(
    source: &SourceEntry,
    headers: &[Header],
    body: &[u8],
    received_at_ms: i64,
) -> Result<String, Error> {
    let Some(expr) = &source.dedup_key else {
        return Ok(envelope::body_dedup_key(body));
    };
    let event = serde_json::json!({ "source": source.name, "received_at_ms": received_at_ms });
    let input = Input::new(headers, body, event);
    if let Some((name, value)) = expr.raw_header(&input)
        && std::str::from_utf8(value).is_err()
    {
        tracing::info!(source = %source.name, header = %name, "request refused: delivery id not UTF-8");
        return Err(Error::DedupKeyNotUtf8 {
            header: name.to_owned(),
        });
    }
    Ok(match expr.eval_string(&input) {
        Ok(Some(key)) if !key.is_empty() => key,
        Ok(_) => envelope::body_dedup_key(body),
        Err(error) => {
            // The event is still accepted (the router decides what a bad body means); only
            // sender-side dedup falls back to the body hash.
            tracing::warn!(source = %source.name, %error, "dedup key expression failed, using body hash");
            envelope::body_dedup_key(body)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Authenticator;
    use hookyard_core::{config::SourceAuth, expr::Expr};
    use http::{HeaderValue, header::AUTHORIZATION};

    fn source(dedup_key: Option<Expr>) -> SourceEntry {
        SourceEntry {
            name: "shop".into(),
            methods: vec![Method::POST],
            allow: "POST".into(),
            auth: Authenticator::new(&SourceAuth::None),
            client: Default::default(),
            limits: Default::default(),
            max_body_bytes: 1024,
            dedup_key,
            dedup_window: None,
            signature: None,
            handshake: None,
            reply: Default::default(),
        }
    }

    fn build(source: &SourceEntry, headers: &HeaderMap, body: &'static [u8]) -> Envelope {
        try_build(source, headers, body).expect("accepted")
    }

    fn try_build(
        source: &SourceEntry,
        headers: &HeaderMap,
        body: &'static [u8],
    ) -> Result<Envelope, Error> {
        let uri: Uri = "/hooks/shop?a=1&b=2".parse().expect("valid uri");
        envelope(
            source,
            Received {
                method: &Method::POST,
                uri: &uri,
                headers,
                body: Bytes::from_static(body),
                received_at_ms: 42,
            },
        )
    }

    #[test]
    fn header_dedup_key_decides_the_id() {
        let s = source(Some(Expr::Header("X-Delivery".into())));
        let mut h = HeaderMap::new();
        h.insert("x-delivery", HeaderValue::from_static("d-1"));
        let a = build(&s, &h, b"one");
        let b = build(&s, &h, b"two");
        assert_eq!(a.dedup_key, "d-1");
        assert_eq!(a.id, b.id);
        assert_eq!(a.id, envelope::event_id("shop", "d-1"));
        assert_eq!(a.query, "a=1&b=2");
        assert_eq!(a.path, "/hooks/shop");
    }

    #[test]
    fn a_delivery_id_that_is_not_utf8_is_refused_not_merged() {
        let s = source(Some(Expr::Header("X-Delivery".into())));
        let mut h = HeaderMap::new();
        for id in [&b"\xff"[..], b"\xfe", b"d-\xc3\x28"] {
            h.insert("x-delivery", HeaderValue::from_bytes(id).expect("obs-text"));
            assert!(matches!(
                try_build(&s, &h, b"x"),
                Err(Error::DedupKeyNotUtf8 { header }) if header == "X-Delivery"
            ));
        }
        h.insert(
            "x-delivery",
            HeaderValue::from_bytes("d-é".as_bytes()).expect("utf-8"),
        );
        assert_eq!(build(&s, &h, b"x").dedup_key, "d-é");
    }

    #[test]
    fn missing_or_empty_key_falls_back_to_the_body_hash() {
        let s = source(Some(Expr::Header("X-Delivery".into())));
        let mut h = HeaderMap::new();
        assert_eq!(
            build(&s, &h, b"x").dedup_key,
            envelope::body_dedup_key(b"x")
        );
        h.insert("x-delivery", HeaderValue::from_static(""));
        assert_eq!(
            build(&s, &h, b"x").dedup_key,
            envelope::body_dedup_key(b"x")
        );
    }

    #[test]
    fn raw_header_bytes_are_kept() {
        let s = source(None);
        let mut h = HeaderMap::new();
        h.insert(
            "x-sig",
            HeaderValue::from_bytes(b"\xffraw").expect("opaque"),
        );
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer kept-for-none"),
        );
        let e = build(&s, &h, b"{}");
        assert!(
            e.headers
                .iter()
                .any(|x| x.name == "x-sig" && x.value == b"\xffraw")
        );
        assert!(e.headers.iter().any(|x| x.name == "authorization"));
    }
}
