//! The one expression language for everything dynamic in an event: jq (through `jaq`), plus
//! short forms for the common cases.
//!
//! In the integration file an expression is written as
//! - a plain string: a literal (`path = "/v1/orders"`);
//! - `{ header = "X-Shop-Topic" }`: the value of a request header;
//! - `{ jq = ".order.id" }`: a jq filter run on the JSON body, with `$event` bound to the event's
//!   metadata (`id`, `source`, `type`, `received_at_ms`, `headers` with lowercase names) and,
//!   in a handler's steps, `$steps` to the results of the steps before (`{}` elsewhere).
//!
//! jq filters are compiled when the file is loaded, so a syntax error fails at start and names
//! the key; they run on the raw body bytes parsed once per event.
//!
//! An `http` step's `path` is a [`path::PathExpr`]: the same forms, with the values a jq
//! template interpolates encoded as one path segment or query component.

pub mod path;

use std::sync::{Arc, OnceLock};

use hookyard_proto::event::v1::Header;
use jaq_core::{
    Ctx, Vars, data,
    load::{Arena, File, Loader},
    unwrap_valr,
};
use jaq_json::Val;
use serde::Deserialize;

use crate::json;

type Filter = jaq_core::Filter<data::JustLut<Val>>;

/// A value computed from an event.
#[derive(Clone)]
pub enum Expr {
    /// A fixed string.
    Literal(String),
    /// The value of a request header (case-insensitive name).
    Header(String),
    /// The value of the first of these headers that is present (a provider preset for senders
    /// that use either of two names; not written in the integration file).
    FirstHeader(Vec<String>),
    /// A jq filter on the JSON body.
    Jq(Jq),
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Literal(s) => write!(f, "Literal({s:?})"),
            Self::Header(h) => write!(f, "Header({h:?})"),
            Self::FirstHeader(hs) => write!(f, "FirstHeader({hs:?})"),
            Self::Jq(jq) => write!(f, "Jq({:?})", jq.source),
        }
    }
}

/// A compiled jq filter and its source text.
#[derive(Clone)]
pub struct Jq {
    source: String,
    filter: Arc<Filter>,
}

/// An expression could not be compiled or evaluated.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExprError {
    /// The jq filter does not parse or compile.
    #[error("invalid jq filter `{filter}`: {detail}")]
    Compile {
        /// The filter text.
        filter: String,
        /// What the compiler said.
        detail: String,
    },
    /// The body is not JSON, so a jq filter cannot run on it.
    #[error("the body is not valid JSON: {0}")]
    BodyNotJson(String),
    /// The body nests deeper than [`crate::json::MAX_DEPTH`], so it is not parsed at all.
    #[error(transparent)]
    BodyTooDeep(#[from] crate::json::TooDeep),
    /// The filter failed at run time.
    #[error("jq filter `{filter}` failed: {detail}")]
    Eval {
        /// The filter text.
        filter: String,
        /// The run-time error.
        detail: String,
    },
}

impl Jq {
    /// Compiles a jq filter with the core, standard and JSON libraries and `$event` and
    /// `$steps` in scope.
    pub fn compile(source: &str) -> Result<Self, ExprError> {
        Self::compile_with_vars(source, &["$event", "$steps"])
    }

    /// The step names the filter reads as `$steps.<name>` or `$steps["<name>"]`, in order of
    /// appearance (a text scan: a name inside a string literal counts too, which only makes a
    /// check stricter).
    pub fn step_references(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = self.source.as_str();
        while let Some(at) = rest.find("$steps") {
            rest = &rest[at + "$steps".len()..];
            let name = if let Some(after) = rest.strip_prefix('.') {
                after
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
            } else if let Some(after) = rest.strip_prefix("[\"") {
                after.split('"').next()
            } else {
                None
            };
            if let Some(name) = name.filter(|n| !n.is_empty())
                && !names.iter().any(|n| n == name)
            {
                names.push(name.to_owned());
            }
        }
        names
    }

    /// Compiles a jq filter with the global variables `vars` (each with its `$`) in scope; the
    /// values given to [`Jq::run_json`] are bound to them in this order.
    pub fn compile_with_vars(source: &str, vars: &[&str]) -> Result<Self, ExprError> {
        let err = |detail: String| ExprError::Compile {
            filter: source.to_owned(),
            detail,
        };
        // jaq's parser recurses once per nesting level: a deep enough filter overflows the stack.
        if nesting(source) > MAX_NESTING {
            return Err(err(format!("nested more than {MAX_NESTING} levels deep")));
        }
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let program = File {
            code: source,
            path: (),
        };
        let modules = loader
            .load(&arena, program)
            .map_err(|errs| err(format!("{} parse error(s)", errs.len())))?;
        let filter = jaq_core::Compiler::default()
            .with_funs(funs)
            .with_global_vars(vars.iter().copied())
            .compile(modules)
            .map_err(|errs| {
                let names: Vec<String> = errs
                    .iter()
                    .flat_map(|(_, es)| es.iter().map(|(name, _)| (*name).to_owned()))
                    .collect();
                err(format!("undefined: {}", names.join(", ")))
            })?;
        Ok(Self {
            source: source.to_owned(),
            filter: Arc::new(filter),
        })
    }

    /// The filter text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the filter on a JSON value, with `vars` bound to the variables it was compiled with
    /// (see [`Jq::compile_with_vars`]), and returns its first output (`None` when it yields
    /// nothing).
    pub fn run_json(
        &self,
        input: &serde_json::Value,
        vars: &[serde_json::Value],
    ) -> Result<Option<serde_json::Value>, ExprError> {
        let vars = vars.iter().map(to_val).collect();
        Ok(self.first(to_val(input), vars)?.map(|v| val_to_json(&v)))
    }

    /// Runs the filter and returns its first output (`None` when it yields nothing).
    fn first(&self, input: Val, vars: Vec<Val>) -> Result<Option<Val>, ExprError> {
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new(vars));
        let mut out = self.filter.id.run((ctx, input)).map(unwrap_valr);
        match out.next() {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(e)) => Err(ExprError::Eval {
                filter: self.source.clone(),
                detail: e.to_string(),
            }),
        }
    }
}

/// Deepest nesting of brackets a jq filter may have.
const MAX_NESTING: usize = 64;

/// The deepest nesting of `(`, `[` and `{` in `source`, counting those inside strings too (an
/// over-estimate is safe: it only refuses filters that are deep already).
fn nesting(source: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for b in source.bytes() {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Event data an expression runs on. The body is parsed as JSON at most once, on first use.
pub struct Input<'a> {
    headers: &'a [Header],
    body: &'a [u8],
    event: serde_json::Value,
    /// `$steps`, and with it the handler-step reading of a body that is not JSON (`null`).
    steps: Option<serde_json::Value>,
    parsed: OnceLock<Result<Val, ExprError>>,
}

impl<'a> Input<'a> {
    /// `event` is the metadata bound to `$event` (the headers are added to it here).
    pub fn new(headers: &'a [Header], body: &'a [u8], mut event: serde_json::Value) -> Self {
        if let Some(map) = event.as_object_mut() {
            let hs: serde_json::Map<String, serde_json::Value> = headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(&h.value).into_owned().into(),
                    )
                })
                .collect();
            map.insert("headers".to_owned(), hs.into());
        }
        Self {
            headers,
            body,
            event,
            steps: None,
            parsed: OnceLock::new(),
        }
    }

    /// Input of a handler's step: `$steps` holds the results of the steps before it, and a
    /// body that is not JSON reads as `null` (a pipeline may handle any body, e.g. with a
    /// subprocess step first) — a body nested too deep is still refused.
    pub fn with_steps(mut self, steps: serde_json::Value) -> Self {
        self.steps = Some(steps);
        self
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    fn first_header(&self, names: &[String]) -> Option<&[u8]> {
        names.iter().find_map(|name| self.header(name))
    }

    fn body(&self) -> Result<Val, ExprError> {
        self.parsed
            .get_or_init(|| {
                json::check_depth(self.body, json::MAX_DEPTH)?;
                match jaq_json::read::parse_single(self.body) {
                    Ok(v) => Ok(v),
                    Err(_) if self.steps.is_some() => Ok(Val::Null),
                    Err(e) => Err(ExprError::BodyNotJson(e.to_string())),
                }
            })
            .clone()
    }

    /// The global variables of a filter: `$event`, `$steps`.
    fn vars(&self) -> Vec<Val> {
        // Outside a handler `$steps` is always `{}`: built once, not per evaluation (ingress
        // and the router evaluate expressions on every event).
        static NO_STEPS: OnceLock<Val> = OnceLock::new();
        let steps = match &self.steps {
            Some(steps) => to_val(steps),
            None => NO_STEPS
                .get_or_init(|| to_val(&serde_json::Value::Object(serde_json::Map::new())))
                .clone(),
        };
        vec![to_val(&self.event), steps]
    }
}

fn to_val(v: &serde_json::Value) -> Val {
    // serde_json output is always valid JSON, which jaq's reader accepts.
    let text = v.to_string();
    jaq_json::read::parse_single(text.as_bytes()).unwrap_or_default()
}

fn val_to_json(v: &Val) -> serde_json::Value {
    serde_json::from_str(&v.to_string())
        .unwrap_or_else(|_| serde_json::Value::String(v.to_string()))
}

impl Expr {
    /// Evaluates to text: strings as they are, other JSON values as JSON text; `None` for a
    /// missing header, `null` or no output.
    pub fn eval_string(&self, input: &Input<'_>) -> Result<Option<String>, ExprError> {
        match self {
            Self::Literal(s) => Ok(Some(s.clone())),
            Self::Header(name) => Ok(input
                .header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())),
            Self::FirstHeader(names) => Ok(input
                .first_header(names)
                .map(|v| String::from_utf8_lossy(v).into_owned())),
            Self::Jq(jq) => {
                let out = jq.first(input.body()?, input.vars())?;
                Ok(match out.map(|v| val_to_json(&v)) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s),
                    Some(other) => Some(other.to_string()),
                })
            }
        }
    }

    /// Evaluates to body bytes: a literal or header as its bytes, a jq result as JSON.
    pub fn eval_body(&self, input: &Input<'_>) -> Result<Vec<u8>, ExprError> {
        match self {
            Self::Literal(s) => Ok(s.as_bytes().to_vec()),
            Self::Header(name) => Ok(input.header(name).map(<[u8]>::to_vec).unwrap_or_default()),
            Self::FirstHeader(names) => Ok(input
                .first_header(names)
                .map(<[u8]>::to_vec)
                .unwrap_or_default()),
            Self::Jq(jq) => {
                let out = jq.first(input.body()?, input.vars())?;
                let json = out.map(|v| val_to_json(&v)).unwrap_or_default();
                Ok(json.to_string().into_bytes())
            }
        }
    }

    /// Evaluates to a JSON value: a literal or header as a string, a jq filter's first output;
    /// `None` for a missing header or no output.
    pub fn eval_json(&self, input: &Input<'_>) -> Result<Option<serde_json::Value>, ExprError> {
        match self {
            Self::Literal(s) => Ok(Some(s.clone().into())),
            Self::Header(_) | Self::FirstHeader(_) => {
                Ok(self.eval_string(input)?.map(serde_json::Value::String))
            }
            Self::Jq(jq) => Ok(jq
                .first(input.body()?, input.vars())?
                .map(|v| val_to_json(&v))),
        }
    }

    /// Evaluates as a condition, with jq's truth: no output, `null` and `false` are false.
    pub fn eval_bool(&self, input: &Input<'_>) -> Result<bool, ExprError> {
        Ok(!matches!(
            self.eval_json(input)?,
            None | Some(serde_json::Value::Null | serde_json::Value::Bool(false))
        ))
    }

    /// The jq filter of a jq expression.
    pub fn as_jq(&self) -> Option<&Jq> {
        match self {
            Self::Jq(jq) => Some(jq),
            _ => None,
        }
    }

    /// The header a header expression reads, by its configured name, and its raw bytes, when
    /// present: for a caller that must take the bytes exactly (a delivery id), since
    /// [`Expr::eval_string`] reads a header that is not UTF-8 lossily.
    pub fn raw_header<'i>(&'i self, input: &'i Input<'_>) -> Option<(&'i str, &'i [u8])> {
        let names = match self {
            Self::Header(name) => std::slice::from_ref(name),
            Self::FirstHeader(names) => names.as_slice(),
            Self::Literal(_) | Self::Jq(_) => return None,
        };
        names
            .iter()
            .find_map(|name| Some((name.as_str(), input.header(name)?)))
    }

    /// True for a jq expression (which needs a JSON body).
    pub fn is_jq(&self) -> bool {
        matches!(self, Self::Jq(_))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ExprSpec {
    Literal(String),
    Table(ExprTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTable {
    header: Option<String>,
    jq: Option<String>,
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match ExprSpec::deserialize(d).map_err(|_| {
            D::Error::custom("expected a string, { header = \"Name\" } or { jq = \"filter\" }")
        })? {
            ExprSpec::Literal(s) => Ok(Self::Literal(s)),
            ExprSpec::Table(ExprTable {
                header: Some(h),
                jq: None,
            }) => {
                if h.is_empty() {
                    return Err(D::Error::custom("header name must not be empty"));
                }
                Ok(Self::Header(h))
            }
            ExprSpec::Table(ExprTable {
                header: None,
                jq: Some(q),
            }) => Jq::compile(&q).map(Self::Jq).map_err(D::Error::custom),
            ExprSpec::Table(_) => Err(D::Error::custom(
                "an expression table takes exactly one of `header` or `jq`",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(name: &str, value: &str) -> Header {
        Header {
            name: name.to_owned(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn jq(s: &str) -> Expr {
        Expr::Jq(Jq::compile(s).expect("compiles"))
    }

    #[test]
    fn jq_extracts_string_from_body() {
        let headers = [];
        let input = Input::new(
            &headers,
            br#"{"type":"order.created"}"#,
            serde_json::json!({}),
        );
        assert_eq!(
            jq(".type").eval_string(&input),
            Ok(Some("order.created".to_owned()))
        );
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let headers = [hdr("X-Shop-Topic", "order.created")];
        let input = Input::new(&headers, b"", serde_json::json!({}));
        let e = Expr::Header("x-shop-topic".to_owned());
        assert_eq!(e.eval_string(&input), Ok(Some("order.created".to_owned())));
        assert_eq!(
            Expr::Header("missing".to_owned()).eval_string(&input),
            Ok(None)
        );
    }

    #[test]
    fn first_header_takes_the_first_name_present() {
        let headers = [hdr("svix-id", "msg_s"), hdr("webhook-id", "msg_w")];
        let input = Input::new(&headers, b"", serde_json::json!({}));
        let names = |ns: &[&str]| Expr::FirstHeader(ns.iter().map(|n| (*n).to_owned()).collect());
        assert_eq!(
            names(&["Webhook-Id", "svix-id"]).eval_string(&input),
            Ok(Some("msg_w".to_owned()))
        );
        assert_eq!(
            names(&["x-none", "svix-id"]).eval_string(&input),
            Ok(Some("msg_s".to_owned()))
        );
        assert_eq!(names(&["x-none"]).eval_string(&input), Ok(None));
    }

    #[test]
    fn jq_builds_a_body_with_event_metadata() {
        let headers = [hdr("X-Request-Id", "r1")];
        let input = Input::new(
            &headers,
            br#"{"order":{"id":"o-1","total":12.5,"lines":[1,2]}}"#,
            serde_json::json!({"id": "evt_1"}),
        );
        let body = jq(r#"{ ref: .order.id, amount: .order.total, event: $event.id, req: $event.headers["x-request-id"], n: (.order.lines | length) }"#)
            .eval_body(&input)
            .expect("evaluates");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"ref":"o-1","amount":12.5,"event":"evt_1","req":"r1","n":2})
        );
    }

    #[test]
    fn jq_on_non_json_body_is_an_error_not_a_panic() {
        let headers = [];
        let input = Input::new(&headers, b"\xff\xfe not json", serde_json::json!({}));
        assert!(matches!(
            jq(".type").eval_string(&input),
            Err(ExprError::BodyNotJson(_))
        ));
    }

    #[test]
    fn invalid_jq_fails_to_compile() {
        assert!(matches!(
            Jq::compile(".foo | ("),
            Err(ExprError::Compile { .. })
        ));
        assert!(matches!(
            Jq::compile("no_such_function(1)"),
            Err(ExprError::Compile { .. })
        ));
    }

    #[test]
    fn deeply_nested_filters_are_refused_not_a_stack_overflow() {
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(Jq::compile(&deep), Err(ExprError::Compile { .. })));
        let fine = format!("{}1{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        assert!(Jq::compile(&fine).is_ok());
    }

    #[test]
    fn deeply_nested_bodies_are_refused_not_a_stack_overflow() {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let body = format!("{}{}", open.repeat(200_000), close.repeat(200_000));
            let input = Input::new(&[], body.as_bytes(), serde_json::json!({}));
            assert_eq!(
                jq(".").eval_string(&input),
                Err(ExprError::BodyTooDeep(json::TooDeep {
                    limit: json::MAX_DEPTH
                }))
            );
        }
        let fine = format!(
            "{}1{}",
            "[".repeat(json::MAX_DEPTH),
            "]".repeat(json::MAX_DEPTH)
        );
        let input = Input::new(&[], fine.as_bytes(), serde_json::json!({}));
        assert!(jq(".").eval_string(&input).is_ok());
    }

    #[test]
    fn null_and_empty_outputs_are_none() {
        let headers = [];
        let input = Input::new(&headers, br#"{"a":null}"#, serde_json::json!({}));
        assert_eq!(jq(".a").eval_string(&input), Ok(None));
        assert_eq!(jq("empty").eval_string(&input), Ok(None));
        assert_eq!(jq(".b").eval_string(&input), Ok(None));
    }

    #[test]
    fn runtime_error_is_reported() {
        let headers = [];
        let input = Input::new(&headers, br#"{"a":"x"}"#, serde_json::json!({}));
        assert!(matches!(
            jq(".a + 1").eval_string(&input),
            Err(ExprError::Eval { .. })
        ));
    }

    #[test]
    fn deserializes_the_three_forms() {
        #[derive(Deserialize)]
        struct T {
            a: Expr,
            b: Expr,
            c: Expr,
        }
        let t: T = toml::from_str(
            r#"
            a = "/v1/orders"
            b = { header = "X-Topic" }
            c = { jq = ".type" }
        "#,
        )
        .expect("parses");
        assert!(matches!(t.a, Expr::Literal(_)));
        assert!(matches!(t.b, Expr::Header(_)));
        assert!(t.c.is_jq());
        assert!(
            toml::from_str::<T>(
                r#"a = "x"
b = { header = "X", jq = "." }
c = "y""#
            )
            .is_err()
        );
    }

    mod fuzz {
        //! Expression input from anywhere: every filter kind over arbitrary bytes, JSON-like
        //! text and nesting far past the bound either evaluates or fails with an error.
        use super::*;
        use proptest::{collection::vec, prelude::*, sample::select};

        fn bodies() -> impl Strategy<Value = Vec<u8>> {
            let jsonish = vec(
                select(vec![
                    b'{', b'}', b'[', b']', b'"', b':', b',', b'\\', b'1', b'a', b' ',
                ]),
                0..300,
            );
            let nested = (0usize..300_000, any::<bool>()).prop_map(|(depth, object)| {
                let (open, close) = if object { ("{\"a\":", "}") } else { ("[", "]") };
                format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
            });
            prop_oneof![vec(any::<u8>(), 0..300), jsonish, nested]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]
            #[test]
            fn every_filter_over_any_body_evaluates_or_errs(
                body in bodies(),
                filter in select(vec![".", ".a", ".[0]", "..", "tostring", ".a.a.a", "[.[]?]", "keys?", "$event.headers"]),
                header in vec(any::<u8>(), 0..40),
            ) {
                let headers = [Header { name: "X-Id".to_owned(), value: header }];
                let input = Input::new(&headers, &body, serde_json::json!({ "source": "s" }));
                let _ = jq(filter).eval_string(&input);
                let _ = jq(filter).eval_body(&input);
                let _ = Expr::Header("x-id".to_owned()).eval_string(&input);
            }
        }
    }
}
