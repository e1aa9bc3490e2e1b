//! The steps of a handler's pipeline. Each step may have a `name`, under which later steps read
//! its result as `$steps.<name>` (an unnamed step is `$steps["<index>"]`), and a `when` filter
//! that skips it unless true.
//!
//! | type         | does                                         | `$steps.<name>`                    |
//! |--------------|----------------------------------------------|------------------------------------|
//! | `http`       | calls a partner through egress               | `status`, `headers`, `body` (parsed) |
//! | `subprocess` | runs the team's own program                  | `result`: its JSON output          |
//! | `transform`  | computes a value with jq, no I/O             | `result`                           |
//! | `publish`    | emits a new event into the pipeline          | `event_id`                         |
//! | `reply`      | answers the sender of a `sync` source        | `status`                           |

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer};

use super::secret::{Secret, SecretError};
use crate::expr::{Expr, Jq};

/// One step of a handler.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    /// Call a partner API through a connection.
    Http(HttpStep),
    /// Answer the sender of a `sync` source (see the source's `reply`).
    Reply(super::ReplyStep),
    /// Run the integration team's own program.
    Subprocess(SubprocessStep),
    /// Compute a value from the event and earlier results.
    Transform(TransformStep),
    /// Emit a new event, routed like a webhook.
    Publish(PublishStep),
}

impl Step {
    /// The step's type as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Reply(_) => "reply",
            Self::Subprocess(_) => "subprocess",
            Self::Transform(_) => "transform",
            Self::Publish(_) => "publish",
        }
    }

    /// The `name` set in the file, if any.
    pub fn given_name(&self) -> Option<&str> {
        match self {
            Self::Http(s) => s.name.as_deref(),
            Self::Reply(s) => s.name.as_deref(),
            Self::Subprocess(s) => s.name.as_deref(),
            Self::Transform(s) => s.name.as_deref(),
            Self::Publish(s) => s.name.as_deref(),
        }
    }

    /// The key of the step's result under `$steps`: its name, else its index.
    pub fn result_key(&self, index: usize) -> String {
        self.given_name()
            .map_or_else(|| index.to_string(), str::to_owned)
    }

    /// The step's `when` filter, if any.
    pub fn when(&self) -> Option<&Expr> {
        match self {
            Self::Http(s) => s.when.as_ref(),
            Self::Reply(s) => s.when.as_ref(),
            Self::Subprocess(s) => s.when.as_ref(),
            Self::Transform(s) => s.when.as_ref(),
            Self::Publish(s) => s.when.as_ref(),
        }
    }

    /// True for a step whose effect is outside the worker (a partner call, a program, an
    /// event, a reply): once it succeeded, a retry of the work item does not run it again.
    pub fn has_side_effect(&self) -> bool {
        !matches!(self, Self::Transform(_))
    }

    /// Every expression of the step with the key it is under (relative to the step).
    pub fn expressions(&self) -> Vec<(String, &Expr)> {
        let mut out: Vec<(String, &Expr)> = Vec::new();
        if let Some(when) = self.when() {
            out.push(("when".to_owned(), when));
        }
        match self {
            Self::Http(s) => {
                if let Some(e) = s.path.expr() {
                    out.push(("path".to_owned(), e));
                }
                out.extend(s.headers.iter().map(|(n, e)| (format!("headers.{n}"), e)));
                out.extend(s.body.iter().map(|e| ("body".to_owned(), e)));
            }
            Self::Reply(s) => {
                out.extend(s.headers.iter().map(|(n, e)| (format!("headers.{n}"), e)));
                out.extend(s.body.iter().map(|e| ("body".to_owned(), e)));
            }
            Self::Subprocess(_) => {}
            Self::Transform(s) => out.push(("jq".to_owned(), &s.jq)),
            Self::Publish(s) => {
                out.push(("event_type".to_owned(), &s.event_type));
                out.extend(s.body.iter().map(|e| ("body".to_owned(), e)));
            }
        }
        out
    }
}

/// An HTTP call to a partner, made by egress.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    /// Name of the step: later steps read its answer as `$steps.<name>.status`, `.headers`
    /// (lower-case names) and `.body` (parsed by its content type: JSON, XML, form or text).
    #[serde(default)]
    pub name: Option<String>,
    /// Run the step only when this jq filter is true, e.g. `{ jq = "$steps.lookup.status == 404" }`.
    #[serde(default)]
    pub when: Option<Expr>,
    /// Connection to call through (a key under `[connections]`).
    pub connection: String,
    /// HTTP method (default `POST`).
    #[serde(default = "default_method")]
    pub method: String,
    /// Path (and query) appended to the connection's `base_url`: a string, or a jq string
    /// template such as `"/v1/orders/\(.order.id)"` whose interpolated values are
    /// percent-encoded as one path segment (after the template's `?`: as a query component).
    pub path: crate::expr::path::PathExpr,
    /// Insert interpolated `path` values as they are, for values that are paths themselves
    /// (default `false`: each value is encoded). Dot segments are refused either way.
    #[serde(default)]
    pub path_raw: bool,
    /// Extra request headers, each a string or an expression.
    #[serde(default)]
    pub headers: BTreeMap<String, Expr>,
    /// Request body; usually `{ jq = "…" }` mapping the event body. Default: the event body as
    /// received, with the event's `Content-Type`.
    pub body: Option<Expr>,
    /// How a computed `body` is encoded, with the matching `Content-Type` (unless `headers`
    /// sets one): `json` (default), `form` (an object of scalars as
    /// `application/x-www-form-urlencoded`), `xml` (an object with one root key, see the XML
    /// mapping in the docs) or `text` (a string as `text/plain`).
    #[serde(default)]
    pub body_format: Option<BodyFormat>,
}

/// Encoding of an `http` step's computed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// JSON, `application/json`.
    Json,
    /// `application/x-www-form-urlencoded` from an object of scalars.
    Form,
    /// XML from an object with one root key, `application/xml`.
    Xml,
    /// A string as it is, `text/plain; charset=utf-8`.
    Text,
}

impl BodyFormat {
    /// The `Content-Type` a body of this format is sent with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Form => "application/x-www-form-urlencoded",
            Self::Xml => "application/xml",
            Self::Text => "text/plain; charset=utf-8",
        }
    }
}

/// Runs the team's own program: the event on stdin as a JSON document, one JSON value on
/// stdout as the result. Exit 0 is success, 75 (`EX_TEMPFAIL`) a retry with the handler's
/// backoff, anything else a permanent failure.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubprocessStep {
    /// Name of the step: later steps read the program's output as `$steps.<name>.result`.
    #[serde(default)]
    pub name: Option<String>,
    /// Run the step only when this jq filter is true.
    #[serde(default)]
    pub when: Option<Expr>,
    /// The program and its arguments, e.g. `["python3", "handlers/enrich.py"]`; never run
    /// through a shell. The program is looked up on the worker's `PATH` unless it has a `/`.
    pub command: Vec<String>,
    /// Working directory (default: the directory of the integration file); a relative path is
    /// relative to that directory.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// The only environment variables the program sees, e.g. `{ API_TOKEN =
    /// "${env:ENRICH_TOKEN}", MODE = "live" }`: literal text or secret references, resolved by
    /// the worker at start. Default none (not even `PATH`).
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Longest a run (or, in `persistent` mode, one event) may take (default `30s`); the
    /// program's whole process group is then killed and the step retried.
    #[serde(default = "default_subprocess_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest output accepted on stdout, in bytes (default 1 MiB).
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: u64,
    /// `oneshot` (default): a process per event. `persistent`: `processes` long-lived copies
    /// exchanging one JSON line per event.
    #[serde(default)]
    pub mode: SubprocessMode,
    /// Long-lived copies kept in `persistent` mode (default 1); usually about the handler's
    /// `concurrency`.
    #[serde(default = "default_processes")]
    pub processes: usize,
}

/// How a subprocess step runs its program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubprocessMode {
    /// A new process per event.
    #[default]
    Oneshot,
    /// Long-lived processes, one JSON line in and out per event.
    Persistent,
}

/// The value of a subprocess environment variable: literal text, or a secret reference
/// (`${env:NAME}`, `${file:/run/secrets/name}`) whose value the worker resolves at start.
#[derive(Debug, Clone)]
pub enum EnvValue {
    /// Text passed as it is.
    Literal(String),
    /// A secret, never logged.
    Secret(Secret),
}

impl TryFrom<String> for EnvValue {
    type Error = SecretError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text.starts_with("${") {
            Secret::try_from(text).map(Self::Secret)
        } else {
            Ok(Self::Literal(text))
        }
    }
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl EnvValue {
    /// The value to pass (a secret's resolved value; empty before resolution).
    pub fn value(&self) -> &str {
        match self {
            Self::Literal(text) => text,
            Self::Secret(secret) => secret.expose(),
        }
    }
}

/// A value computed with jq, without I/O: `$steps.<name>.result`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformStep {
    /// Name of the step: later steps read the value as `$steps.<name>.result`.
    #[serde(default)]
    pub name: Option<String>,
    /// Run the step only when this jq filter is true.
    #[serde(default)]
    pub when: Option<Expr>,
    /// The jq filter, over the event body with `$event` and `$steps`, e.g.
    /// `"{ id: .order.id, score: $steps.enrich.result.score }"`.
    #[serde(deserialize_with = "jq_filter")]
    pub jq: Expr,
}

/// Emits a new event into `HOOKYARD_IN`, routed like a webhook from the same source. It is
/// stored once however often the work item is redelivered: its id derives from the event id,
/// the handler and the step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishStep {
    /// Name of the step (`$steps.<name>.event_id` is the new event's id).
    #[serde(default)]
    pub name: Option<String>,
    /// Run the step only when this jq filter is true.
    #[serde(default)]
    pub when: Option<Expr>,
    /// Type of the new event, a string or an expression, e.g. `"order.enriched"`.
    pub event_type: Expr,
    /// Body of the new event (default: this event's body), usually `{ jq = "…" }`.
    pub body: Option<Expr>,
}

fn jq_filter<'de, D: Deserializer<'de>>(d: D) -> Result<Expr, D::Error> {
    let text = String::deserialize(d)?;
    Jq::compile(&text)
        .map(Expr::Jq)
        .map_err(serde::de::Error::custom)
}

fn default_method() -> String {
    "POST".to_owned()
}
fn default_subprocess_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_output_bytes() -> u64 {
    1024 * 1024
}
fn default_processes() -> usize {
    1
}

#[cfg(test)]
#[path = "steps_tests.rs"]
mod tests;
