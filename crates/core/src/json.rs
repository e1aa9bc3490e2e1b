//! The bound on untrusted JSON: how deeply a body may nest before anything parses it.
//!
//! The JSON readers behind jq recurse once per level of nesting, and so do the printers and the
//! destructors of the values they build: a body of a few kilobytes of `[[[[…` would overflow a
//! thread's stack and abort the process. Every body an expression reads is measured here first,
//! with a loop that keeps no stack, and refused when it nests deeper than [`MAX_DEPTH`].

/// Deepest nesting of arrays and objects a JSON body may have. Webhook payloads seen in the
/// wild stay well under 20 levels; 64 leaves room while keeping every reader's recursion short.
pub const MAX_DEPTH: usize = 64;

/// A body nests deeper than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the body nests deeper than {limit} levels of arrays and objects")]
pub struct TooDeep {
    /// The limit it passed.
    pub limit: usize,
}

/// Checks that `bytes` nests at most `limit` levels of `[` and `{`, counting outside strings
/// only. It does not validate the JSON: a reader still refuses what is malformed, but no longer
/// recursion-deep.
pub fn check_depth(bytes: &[u8], limit: usize) -> Result<(), TooDeep> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(TooDeep { limit });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// [`check_depth`] with [`MAX_DEPTH`] for a body that starts like a JSON array or object (after
/// whitespace); other bodies (XML, forms, text) are no JSON reader's concern and pass.
pub fn check_body(bytes: &[u8]) -> Result<(), TooDeep> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[' | b'{') => check_depth(bytes, MAX_DEPTH),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, levels: usize) -> Vec<u8> {
        format!("{}{}", open.repeat(levels), close.repeat(levels)).into_bytes()
    }

    #[test]
    fn depth_up_to_the_limit_passes_and_one_more_is_refused() {
        assert_eq!(check_depth(&nested("[", "]", 64), 64), Ok(()));
        assert_eq!(
            check_depth(&nested("[", "]", 65), 64),
            Err(TooDeep { limit: 64 })
        );
        assert_eq!(
            check_depth(&nested("{\"a\":", "}", 65), 64),
            Err(TooDeep { limit: 64 })
        );
    }

    #[test]
    fn siblings_do_not_add_up() {
        let wide = format!("[{}]", vec!["[[1]]"; 10_000].join(","));
        assert_eq!(check_depth(wide.as_bytes(), 3), Ok(()));
        assert!(check_depth(wide.as_bytes(), 2).is_err());
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let body = br#"{"a": "[[[[[[[[[[", "b": "\"[[[[[[", "c": "\\"}"#;
        assert_eq!(check_depth(body, 1), Ok(()));
        // After an escaped backslash the quote closes the string, so this bracket counts.
        assert!(check_depth(br#"{"a": "\\", "b": [[1]]}"#, 2).is_err());
    }

    #[test]
    fn a_million_levels_are_refused_without_recursion() {
        let body = nested("[", "]", 1_000_000);
        assert_eq!(check_depth(&body, MAX_DEPTH), Err(TooDeep { limit: 64 }));
    }

    #[test]
    fn only_bodies_that_start_like_json_are_measured() {
        let deep = nested("[", "]", 100);
        assert!(check_body(&deep).is_err());
        assert!(check_body(&[b" \n\t".as_slice(), &deep].concat()).is_err());
        assert_eq!(check_body(&[b"<a>".as_slice(), &deep].concat()), Ok(()));
        assert_eq!(check_body(b""), Ok(()));
    }

    #[test]
    fn non_utf8_and_unbalanced_input_is_measured_not_trusted() {
        assert_eq!(check_depth(b"\xff\xfe]]]]}}}", 1), Ok(()));
        assert!(check_depth(b"\xff[[[", 2).is_err());
    }
}
