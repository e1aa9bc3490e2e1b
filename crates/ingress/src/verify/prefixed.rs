//! Schemes with one signature in one header, written `prefix + encoding(MAC(content))`:
//! GitHub, Shopify, Slack and the generic `hmac` scheme, each a [`Layout`].

use std::time::{Duration, SystemTime};

use hookyard_core::config::{
    ContentPart, HmacAlgorithm, HmacSignature, Secret, SignatureEncoding, content_parts,
};
use http::HeaderMap;

use super::{
    MAX_HEADER_LEN, VerifyError, check_timestamp, decode,
    mac::{any_matches, output_len, secret_keys},
    parse_timestamp, single,
};

/// Where a scheme puts its signature and what it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout<'a> {
    pub header: &'a str,
    pub prefix: &'a str,
    pub encoding: SignatureEncoding,
    pub algorithm: HmacAlgorithm,
    pub content: Vec<ContentPart<'a>>,
    /// Timestamp header and tolerance, when the scheme signs a timestamp.
    pub timestamp: Option<(&'a str, Duration)>,
    pub id_header: Option<&'a str>,
}

/// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
pub(crate) fn github() -> Layout<'static> {
    Layout {
        header: "x-hub-signature-256",
        prefix: "sha256=",
        encoding: SignatureEncoding::Hex,
        algorithm: HmacAlgorithm::Sha256,
        content: vec![ContentPart::Body],
        timestamp: None,
        id_header: None,
    }
}

/// Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the body.
pub(crate) fn shopify() -> Layout<'static> {
    Layout {
        header: "x-shopify-hmac-sha256",
        prefix: "",
        encoding: SignatureEncoding::Base64,
        ..github()
    }
}

/// Slack: `X-Slack-Signature: v0=<hex>` over `v0:{X-Slack-Request-Timestamp}:{body}`.
pub(crate) fn slack(tolerance: Duration) -> Layout<'static> {
    Layout {
        header: "x-slack-signature",
        prefix: "v0=",
        content: vec![
            ContentPart::Literal("v0:"),
            ContentPart::Timestamp,
            ContentPart::Literal(":"),
            ContentPart::Body,
        ],
        timestamp: Some(("x-slack-request-timestamp", tolerance)),
        ..github()
    }
}

impl<'a> Layout<'a> {
    /// The layout of a generic `hmac` signature. A template the configuration check refuses
    /// signs nothing, so no request matches it.
    pub(crate) fn from_config(hmac: &'a HmacSignature) -> Self {
        Self {
            header: &hmac.header,
            prefix: hmac.prefix.as_deref().unwrap_or_default(),
            encoding: hmac.encoding,
            algorithm: hmac.algorithm,
            content: content_parts(&hmac.content).unwrap_or_default(),
            timestamp: hmac
                .timestamp_header
                .as_deref()
                .map(|name| (name, hmac.tolerance)),
            id_header: hmac.id_header.as_deref(),
        }
    }
}

/// Takes the signature out of a header value: the prefix, then exactly one MAC's worth of
/// `encoding`.
pub(crate) fn parse(layout: &Layout<'_>, value: &[u8]) -> Result<Vec<u8>, VerifyError> {
    let malformed = || VerifyError::MalformedHeader(layout.header.to_owned());
    if value.len() > MAX_HEADER_LEN {
        return Err(malformed());
    }
    let Some(encoded) = value.strip_prefix(layout.prefix.as_bytes()) else {
        return Err(if is_other_version(layout.prefix, value) {
            VerifyError::UnsupportedVersion(layout.header.to_owned())
        } else {
            malformed()
        });
    };
    decode(encoded, layout.encoding, output_len(layout.algorithm)).ok_or_else(malformed)
}

/// `sha1=…` where `sha256=…` is expected: a label of the same form as the prefix.
fn is_other_version(prefix: &str, value: &[u8]) -> bool {
    let Some(label) = prefix.strip_suffix('=') else {
        return false;
    };
    let Some(end) = value.iter().position(|&b| b == b'=') else {
        return false;
    };
    let other = &value[..end];
    !label.is_empty()
        && !other.is_empty()
        && other.len() <= 16
        && other.iter().all(u8::is_ascii_alphanumeric)
}

pub(crate) fn verify(
    layout: &Layout<'_>,
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), VerifyError> {
    let signature = parse(layout, single(headers, layout.header)?.as_bytes())?;
    let timestamp = match layout.timestamp {
        Some((name, tolerance)) => {
            let text = single(headers, name)?.as_bytes();
            check_timestamp(parse_timestamp(text)?, tolerance, now)?;
            text
        }
        None => b"",
    };
    let id = match layout.id_header {
        Some(name) => single(headers, name)?.as_bytes(),
        None => b"",
    };
    let content: Vec<&[u8]> = layout
        .content
        .iter()
        .map(|part| match part {
            ContentPart::Literal(text) => text.as_bytes(),
            ContentPart::Body => body,
            ContentPart::Timestamp => timestamp,
            ContentPart::Id => id,
        })
        .collect();
    // An empty template (refused at start) would sign nothing a sender controls.
    if content.is_empty() {
        return Err(VerifyError::NoMatch);
    }
    if any_matches(
        layout.algorithm,
        secret_keys(secrets),
        &content,
        &[&signature],
    ) {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

#[cfg(test)]
mod tests;
