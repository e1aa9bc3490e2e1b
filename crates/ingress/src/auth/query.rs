//! Credentials in the query string: finding a parameter's value and removing the parameter
//! from what is stored.
//!
//! Names and values are percent-decoded, but `+` is kept as is: credentials are often base64,
//! where `+` is a character, and a sender that means a space writes `%20` as readily.

use std::borrow::Cow;

use super::{AuthError, MAX_HEADER_LEN};

/// Decodes `%XX` escapes; a `%` not followed by two hex digits is kept literally.
pub(super) fn percent_decode(text: &[u8]) -> Cow<'_, [u8]> {
    if !text.contains(&b'%') {
        return Cow::Borrowed(text);
    }
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                text.get(i + 1).copied().and_then(hex),
                text.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits make at most 0xff.
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
            i += 3;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    Cow::Owned(out)
}

fn is_param(pair: &str, name: &str) -> bool {
    let key = pair.split_once('=').map_or(pair, |(k, _)| k);
    *percent_decode(key.as_bytes()) == *name.as_bytes()
}

/// The decoded value of parameter `name`: missing or empty is [`AuthError::KeyMissing`];
/// repeated or too long is [`AuthError::KeyMalformed`].
pub(super) fn single_value(query: Option<&str>, name: &str) -> Result<Vec<u8>, AuthError> {
    let mut values = query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| is_param(pair, name))
        .map(|pair| pair.split_once('=').map_or("", |(_, v)| v));
    let value = values.next().ok_or(AuthError::KeyMissing)?;
    if values.next().is_some() || value.len() > MAX_HEADER_LEN {
        return Err(AuthError::KeyMalformed);
    }
    if value.is_empty() {
        return Err(AuthError::KeyMissing);
    }
    Ok(percent_decode(value.as_bytes()).into_owned())
}

/// `query` without any `name` parameter, other parameters as they came.
pub(super) fn without(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !is_param(pair, name))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_are_decoded_and_plus_is_kept() {
        assert_eq!(&*percent_decode(b"a%2Bb+c%3d"), b"a+b+c=");
        assert_eq!(&*percent_decode(b"100%"), b"100%");
        assert_eq!(&*percent_decode(b"%zz%4"), b"%zz%4");
        assert_eq!(&*percent_decode(b"%ff"), b"\xff");
    }

    #[test]
    fn a_single_value_is_found_by_decoded_name() {
        let q = Some("a=1&api%5Fkey=k%2B1&b=2");
        assert_eq!(single_value(q, "api_key"), Ok(b"k+1".to_vec()));
        assert_eq!(single_value(q, "c"), Err(AuthError::KeyMissing));
        assert_eq!(single_value(None, "c"), Err(AuthError::KeyMissing));
        assert_eq!(single_value(Some("c="), "c"), Err(AuthError::KeyMissing));
        assert_eq!(single_value(Some("c"), "c"), Err(AuthError::KeyMissing));
        assert_eq!(
            single_value(Some("c=1&c=1"), "c"),
            Err(AuthError::KeyMalformed)
        );
        let long = format!("c={}", "x".repeat(MAX_HEADER_LEN + 1));
        assert_eq!(single_value(Some(&long), "c"), Err(AuthError::KeyMalformed));
    }

    #[test]
    fn the_parameter_is_removed_and_the_rest_kept() {
        assert_eq!(without("a=1&key=s&b=%20&key=t", "key"), "a=1&b=%20");
        assert_eq!(without("key=s", "key"), "");
        assert_eq!(without("k%65y=s&keys=1", "key"), "keys=1");
        assert_eq!(without("", "key"), "");
    }
}
