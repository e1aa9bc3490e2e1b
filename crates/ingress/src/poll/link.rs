//! The next page of a `pagination = { type = "link" }` source: the `Link: <…>; rel="next"`
//! header of an answer (RFC 8288), turned back into a path under the connection's `base_url`.
//!
//! Egress only ever calls a connection's `base_url` plus a path, so a link is followed only when
//! it stays under that URL (same scheme, host and port, path below the base path): a partner
//! cannot send the connection's credentials to another host through a link.

use url::Url;

/// A `Link` header that cannot be followed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    /// The header does not parse.
    #[error("the Link header does not parse: {0}")]
    Malformed(String),
    /// The next link points outside the connection's `base_url`.
    #[error("the next link leaves the connection's base_url")]
    Outside,
}

/// The path and query, relative to `base`, of the `rel="next"` link in `values` (every `Link`
/// header of the answer); `None` when there is none. `request` is the URL that was called, which
/// relative links resolve against.
pub fn next_path(values: &[&str], base: &Url, request: &Url) -> Result<Option<String>, LinkError> {
    let mut next = None;
    for value in values {
        let links = http_link::parse_link_header(value, request)
            .map_err(|e| LinkError::Malformed(e.to_string()))?;
        if let Some(link) = links
            .into_iter()
            .find(|l| l.rel.eq_ignore_ascii_case("next"))
        {
            next = Some(link.target);
            break;
        }
    }
    next.map(|target| relative(base, &target)).transpose()
}

/// `target` as a path and query below `base`, which egress appends to `base` again.
fn relative(base: &Url, target: &Url) -> Result<String, LinkError> {
    if target.scheme() != base.scheme()
        || target.host() != base.host()
        || target.port_or_known_default() != base.port_or_known_default()
    {
        return Err(LinkError::Outside);
    }
    let prefix = base.path().trim_end_matches('/');
    let rest = target
        .path()
        .strip_prefix(prefix)
        .filter(|rest| rest.starts_with('/'))
        .ok_or(LinkError::Outside)?;
    Ok(match target.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    fn next(value: &str, base: &str) -> Result<Option<String>, LinkError> {
        let base = url(base);
        let request = base.join("items?page=1").expect("joins");
        next_path(&[value], &base, &request)
    }

    #[test]
    fn follows_rel_next_among_others() {
        let header = r#"<https://api.example.com/v2/items?page=3>; rel="next", <https://api.example.com/v2/items?page=9>; rel="last""#;
        assert_eq!(
            next(header, "https://api.example.com/v2/"),
            Ok(Some("/items?page=3".to_owned()))
        );
        // Several relations in one rel, any case.
        let header = r#"<https://api.example.com/v2/items?page=3>; rel="prev NEXT""#;
        assert_eq!(
            next(header, "https://api.example.com/v2"),
            Ok(Some("/items?page=3".to_owned()))
        );
    }

    #[test]
    fn relative_links_resolve_against_the_request() {
        assert_eq!(
            next(
                r#"</v2/items?page=2&since=a%2Cb>; rel=next"#,
                "https://api.example.com/v2"
            ),
            Ok(Some("/items?page=2&since=a%2Cb".to_owned()))
        );
        assert_eq!(
            next(
                r#"<items?page=2>; rel="next""#,
                "https://api.example.com/v2/"
            ),
            Ok(Some("/items?page=2".to_owned()))
        );
    }

    #[test]
    fn no_next_is_the_last_page() {
        assert_eq!(
            next(
                r#"<https://api.example.com/a>; rel="prev""#,
                "https://api.example.com"
            ),
            Ok(None)
        );
    }

    #[test]
    fn links_outside_the_base_url_are_refused() {
        for header in [
            r#"<https://evil.example.net/v2/items>; rel="next""#,
            r#"<http://api.example.com/v2/items>; rel="next""#,
            r#"<https://api.example.com:8443/v2/items>; rel="next""#,
            r#"<https://api.example.com/v20/items>; rel="next""#,
            r#"<https://api.example.com/other>; rel="next""#,
        ] {
            assert_eq!(
                next(header, "https://api.example.com/v2"),
                Err(LinkError::Outside),
                "{header}"
            );
        }
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        let long = format!("<{}>; rel=next", "a".repeat(100_000));
        for header in [
            "",
            "garbage",
            "<unclosed; rel=next",
            "<https://api.example.com/v2/x>; rel",
            "<https://api.example.com/v2/x>; rel=\"next",
            "<\u{0}>; rel=next",
            "<https://[::1/>; rel=next",
            long.as_str(),
            "<>; rel=next, <>; rel=next,,,;;;",
        ] {
            let _ = next(header, "https://api.example.com/v2");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(header in ".{0,200}") {
            let _ = next(&header, "https://api.example.com/v2");
        }
    }
}
