//! Strict `application/x-www-form-urlencoded` decoding, for token request bodies and for
//! client credentials inside `Authorization: Basic` (RFC 6749 §2.3.1 encodes both that way).

use std::collections::HashMap;

/// Why a form body or form-encoded value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding")]
    Percent,
    /// The decoded bytes are not UTF-8.
    #[error("decoded value is not utf-8")]
    Utf8,
    /// A parameter appears more than once, which RFC 6749 §3.2 forbids in token requests.
    #[error("parameter {0} is repeated")]
    Repeated(String),
}

/// Decodes one form-encoded value: `+` is a space, `%XX` a byte, and the result must be UTF-8.
pub fn decode(value: &str) -> Result<String, FormError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let high = bytes.get(index + 1).and_then(|b| hex_digit(*b));
                let low = bytes.get(index + 2).and_then(|b| hex_digit(*b));
                match (high, low) {
                    (Some(high), Some(low)) => out.push((high << 4) | low),
                    _ => return Err(FormError::Percent),
                }
                index += 2;
            }
            other => out.push(other),
        }
        index += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::Utf8)
}

/// Parses a form body into its parameters; a repeated name is an error, empty pairs are skipped.
pub fn parse(body: &str) -> Result<HashMap<String, String>, FormError> {
    let mut params = HashMap::new();
    for pair in body.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name)?;
        let value = decode(value)?;
        if params.contains_key(&name) {
            return Err(FormError::Repeated(name));
        }
        params.insert(name, value);
    }
    Ok(params)
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_handles_plus_and_percent() {
        assert_eq!(decode("a+b%3Ac%25%2B").as_deref(), Ok("a b:c%+"));
        assert_eq!(decode("caf%C3%A9").as_deref(), Ok("café"));
    }

    #[test]
    fn decode_rejects_bad_escapes_and_non_utf8() {
        assert_eq!(decode("%4"), Err(FormError::Percent));
        assert_eq!(decode("%zz"), Err(FormError::Percent));
        assert_eq!(decode("%FF"), Err(FormError::Utf8));
    }

    #[test]
    fn parse_reads_pairs_and_rejects_repeats() {
        let params = parse("grant_type=client_credentials&scope=a+b&&flag").expect("valid form");
        assert_eq!(params["grant_type"], "client_credentials");
        assert_eq!(params["scope"], "a b");
        assert_eq!(params["flag"], "");
        assert_eq!(
            parse("scope=a&scope=b"),
            Err(FormError::Repeated("scope".into()))
        );
    }
}
