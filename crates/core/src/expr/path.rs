//! The `path` of an `http` step: an expression whose `\(…)` interpolations insert sender data,
//! encoded for where it lands, so a value cannot add segments, climb out of the connection's
//! `base_url` or start a query.
//!
//! A jq path is compiled with every interpolated string (`"/v1/orders/\(.order.id)"`) given a
//! format, `@hookyard_value`, that wraps the value between two private-use characters, its
//! text percent-encoded inside (so a value cannot forge the wrapping). [`PathExpr::render`] then
//! walks the filter's output: text outside the wrappers is what the step wrote; each wrapped
//! value is encoded as one path segment (everything but unreserved characters and sub-delims;
//! `/ ? # %` included) before the first `?` the step wrote, and as a query component (everything
//! but unreserved characters; `& = + #` included) after it. Control characters in a value are
//! refused. With `path_raw = true` values are inserted as they are (for values that are paths).
//! Either way the result may not hold a `.` or `..` segment once percent-decoded, which egress
//! checks again.
//!
//! Only interpolation marks a value: what a filter builds with `+` or returns whole is taken as
//! written by the step. A format string (`@uri "…"`) cannot be marked and is refused.

use std::borrow::Cow;

use jaq_core::load::{
    Lexer,
    lex::{StrPart, Tok, Token},
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Deserialize;

use super::{Expr, ExprError, ExprSpec, ExprTable, Input, Jq};

/// Opens a value in the marked output.
const OPEN: char = '\u{e000}';
/// Closes a value in the marked output.
const CLOSE: char = '\u{e001}';
/// The format every interpolated string of a path filter gets.
const FORMAT: &str = "@hookyard_value";
/// A missing (`null`) or empty value is an error: `/v1/orders/\(.id)` must never become
/// `/v1/orders/null` or the collection `/v1/orders/`.
const FORMAT_DEF: &str = r#"def @hookyard_value: if . == null or . == "" then error("a value interpolated into the path is missing or empty") else "\ue000" + (tostring | @uri) + "\ue001" end; "#;

/// RFC 3986 `unreserved`: never encoded.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// `unreserved` and `sub-delims` stay as they are in a segment; `:` and `@` are encoded too.
const SEGMENT: &AsciiSet = &QUERY_COMPONENT
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=');

/// Why a path could not be built from an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// The expression failed.
    #[error(transparent)]
    Expr(ExprError),
    /// A value holds a control character (a line break would split the request line).
    #[error("a value in the path holds a control character")]
    ControlCharacter,
    /// The path holds a `.` or `..` segment, after percent-decoding.
    #[error("the path holds a '.' or '..' segment")]
    DotSegment,
    /// The filter changed an interpolated value after interpolation (sliced or re-cased it).
    #[error("an interpolated value was altered after interpolation")]
    Altered,
}

/// An `http` step's `path`: a literal, or a jq filter whose interpolations are encoded.
#[derive(Clone, Debug)]
pub struct PathExpr(Expr);

impl PathExpr {
    /// The path when it is a fixed string.
    pub fn literal(&self) -> Option<&str> {
        match &self.0 {
            Expr::Literal(s) => Some(s),
            _ => None,
        }
    }

    /// The expression, when the path is computed (not a fixed string).
    pub fn expr(&self) -> Option<&Expr> {
        match &self.0 {
            Expr::Literal(_) => None,
            other => Some(other),
        }
    }

    /// True when the whole path is a request header's value.
    pub fn is_header(&self) -> bool {
        matches!(self.0, Expr::Header(_) | Expr::FirstHeader(_))
    }

    /// The path for `input`: interpolated values encoded (or, with `raw`, inserted as they
    /// are); `None` when the expression gives no value.
    pub fn render(&self, input: &Input<'_>, raw: bool) -> Result<Option<String>, PathError> {
        let Some(out) = self.0.eval_string(input).map_err(PathError::Expr)? else {
            return Ok(None);
        };
        let path = match &self.0 {
            Expr::Jq(_) => unmark(&out, raw)?,
            _ => out,
        };
        if path.chars().any(char::is_control) {
            return Err(PathError::ControlCharacter);
        }
        if has_dot_segment(&path) {
            return Err(PathError::DotSegment);
        }
        Ok(Some(path))
    }
}

/// True when the path part of `path` (before `?` or `#`), percent-decoded, has a `.` or `..`
/// segment, separated by `/` or `\` (which some servers read as `/`).
pub fn has_dot_segment(path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let decoded: Cow<'_, str> = percent_decode_str(path).decode_utf8_lossy();
    decoded.split(['/', '\\']).any(|s| s == "." || s == "..")
}

/// Replaces each marked value of `out` by its encoded (or, with `raw`, plain) text.
fn unmark(out: &str, raw: bool) -> Result<String, PathError> {
    let mut path = String::with_capacity(out.len());
    let mut in_query = false;
    let mut rest = out;
    loop {
        let (written, value) = match rest.split_once(OPEN) {
            Some((written, value)) => (written, Some(value)),
            None => (rest, None),
        };
        if written.contains(CLOSE) {
            return Err(PathError::Altered);
        }
        in_query |= written.contains('?');
        path.push_str(written);
        let Some(value) = value else {
            return Ok(path);
        };
        let (encoded, after) = value.split_once(CLOSE).ok_or(PathError::Altered)?;
        if encoded.contains(OPEN) {
            return Err(PathError::Altered);
        }
        let value = percent_decode_str(encoded)
            .decode_utf8()
            .map_err(|_| PathError::Altered)?;
        if value.chars().any(char::is_control) {
            return Err(PathError::ControlCharacter);
        }
        if raw {
            path.push_str(&value);
        } else {
            let set = if in_query { QUERY_COMPONENT } else { SEGMENT };
            path.extend(utf8_percent_encode(&value, set));
        }
        rest = after;
    }
}

impl Jq {
    /// Compiles a path filter: every interpolated string gets the marking format.
    fn compile_path(source: &str) -> Result<Self, ExprError> {
        let marked = mark(source)?;
        let compiled = Self::compile(&format!("{FORMAT_DEF}{marked}")).map_err(|e| match e {
            ExprError::Compile { detail, .. } => ExprError::Compile {
                filter: source.to_owned(),
                detail,
            },
            other => other,
        })?;
        Ok(Self {
            source: source.to_owned(),
            filter: compiled.filter,
        })
    }
}

/// `source` with [`FORMAT`] before each interpolated string.
fn mark(source: &str) -> Result<String, ExprError> {
    // A filter that does not lex is left to the compiler, which reports it.
    let Ok(tokens) = Lexer::new(source).lex() else {
        return Ok(source.to_owned());
    };
    let mut offsets = Vec::new();
    collect(source, &tokens, &mut offsets)?;
    let mut marked = source.to_owned();
    for offset in offsets.into_iter().rev() {
        marked.insert_str(offset, &format!("{FORMAT} "));
    }
    Ok(marked)
}

/// Offsets of the interpolated strings among `tokens` and the blocks they hold; strings inside
/// an interpolation are part of its value and are not marked on their own.
fn collect(
    source: &str,
    tokens: &[Token<&str>],
    offsets: &mut Vec<usize>,
) -> Result<(), ExprError> {
    let mut previous: Option<&Tok<&str>> = None;
    for token in tokens {
        match &token.1 {
            Tok::Str(_) if matches!(previous, Some(Tok::Fmt)) => {
                return Err(ExprError::Compile {
                    filter: source.to_owned(),
                    detail: "a format string cannot be used in a path; interpolations are \
                             encoded already"
                        .to_owned(),
                });
            }
            Tok::Str(parts) if parts.iter().any(|p| matches!(p, StrPart::Term(_))) => {
                offsets.push(token.0.as_ptr() as usize - source.as_ptr() as usize);
            }
            Tok::Block(inner) => collect(source, inner, offsets)?,
            _ => {}
        }
        previous = Some(&token.1);
    }
    Ok(())
}

impl<'de> Deserialize<'de> for PathExpr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match ExprSpec::deserialize(d).map_err(|_| {
            D::Error::custom("expected a string, { header = \"Name\" } or { jq = \"filter\" }")
        })? {
            ExprSpec::Table(ExprTable {
                header: None,
                jq: Some(q),
            }) => Jq::compile_path(&q)
                .map(|jq| Self(Expr::Jq(jq)))
                .map_err(D::Error::custom),
            ExprSpec::Literal(s) => Ok(Self(Expr::Literal(s))),
            ExprSpec::Table(ExprTable {
                header: Some(h),
                jq: None,
            }) if !h.is_empty() => Ok(Self(Expr::Header(h))),
            ExprSpec::Table(_) => Err(D::Error::custom(
                "an expression table takes exactly one of `header` or `jq`",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
