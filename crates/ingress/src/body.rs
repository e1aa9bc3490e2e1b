//! Reading a request body within a source's `max_body_bytes`.
//!
//! A declared `Content-Length` over the limit is refused before a byte is read. Otherwise the
//! body is read through [`http_body_util::Limited`], so a chunked body that turns out too large
//! is refused as soon as it passes the limit, having buffered at most the limit.

use bytes::Bytes;
use http::{HeaderMap, header::CONTENT_LENGTH};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::Error;

/// The declared body length, when there is a single well-formed `Content-Length`.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Checks the declared length against `limit` without reading anything.
pub(crate) fn check_declared(headers: &HeaderMap, limit: u64) -> Result<(), Error> {
    match declared_length(headers) {
        Some(length) if length > limit => Err(Error::BodyTooLarge { limit }),
        _ => Ok(()),
    }
}

/// Reads the whole body, refusing it once more than `limit` bytes arrive.
pub(crate) async fn read(body: axum::body::Body, limit: u64) -> Result<Bytes, Error> {
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Error::BodyTooLarge { limit })
        }
        Err(e) => Err(Error::BodyRead(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_length(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn declared_length_over_the_limit_is_refused() {
        assert!(matches!(
            check_declared(&with_length("11"), 10),
            Err(Error::BodyTooLarge { limit: 10 })
        ));
        assert!(check_declared(&with_length("10"), 10).is_ok());
        assert!(check_declared(&HeaderMap::new(), 10).is_ok());
    }

    #[tokio::test]
    async fn body_at_the_limit_is_read_and_one_byte_more_is_refused() {
        let ok = read(axum::body::Body::from(vec![7u8; 10]), 10).await;
        assert_eq!(ok.ok().map(|b| b.len()), Some(10));
        let too_big = read(axum::body::Body::from(vec![7u8; 11]), 10).await;
        assert!(matches!(too_big, Err(Error::BodyTooLarge { limit: 10 })));
    }
}
