//! Polling sources: `[sources.NAME.poll]`, a partner API that ingress calls on a schedule
//! through a connection, each new or changed record of its answers becoming one event.
//!
//! Every jq filter here is compiled with two variables instead of `$event`: `$cursor`, the
//! cursor stored after the last successful poll (or `initial_cursor`), and `$now`, the Unix time
//! in seconds at which the poll started. The request values (`path`, `query`, `headers`,
//! `body`) run on `null`; `records` and `cursor = { answer = … }` on the partner's JSON answer;
//! `record_id`, `record_version` and `cursor = { record = … }` on one record.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Deserializer};

use crate::expr::{ExprError, Jq};

/// The variables every poll filter reads, in the order their values are bound.
pub const POLL_VARS: [&str; 2] = ["$cursor", "$now"];

/// What a poll filter reads besides its input.
#[derive(Debug, Clone, Copy)]
pub struct PollVars<'a> {
    /// The cursor the poll started from.
    pub cursor: &'a serde_json::Value,
    /// Unix seconds at the start of the poll.
    pub now: i64,
}

impl PollVars<'_> {
    fn values(&self) -> [serde_json::Value; 2] {
        [self.cursor.clone(), self.now.into()]
    }
}

/// A jq filter of a poll source, compiled when the file is loaded.
#[derive(Clone)]
pub struct PollJq(Jq);

impl std::fmt::Debug for PollJq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PollJq({:?})", self.0.source())
    }
}

impl PollJq {
    /// Compiles `source` with [`POLL_VARS`] in scope.
    pub fn compile(source: &str) -> Result<Self, ExprError> {
        Jq::compile_with_vars(source, &POLL_VARS).map(Self)
    }

    /// The filter text as written.
    pub fn source(&self) -> &str {
        self.0.source()
    }

    /// The first output of the filter on `input` (`None` when it yields nothing or `null`).
    pub fn eval(
        &self,
        input: &serde_json::Value,
        vars: &PollVars<'_>,
    ) -> Result<Option<serde_json::Value>, ExprError> {
        Ok(self
            .0
            .run_json(input, &vars.values())?
            .filter(|v| !v.is_null()))
    }
}

impl<'de> Deserialize<'de> for PollJq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::compile(&text).map_err(serde::de::Error::custom)
    }
}

/// A value of the poll request: a fixed string or `{ jq = "…" }` reading `$cursor` and `$now`.
#[derive(Clone, Debug)]
pub enum PollValue {
    /// Sent as written.
    Literal(String),
    /// Computed for every poll.
    Jq(PollJq),
}

impl PollValue {
    /// The value as text (strings as they are, other JSON as JSON); `None` for `null` or no
    /// output.
    pub fn eval_string(&self, vars: &PollVars<'_>) -> Result<Option<String>, ExprError> {
        match self {
            Self::Literal(text) => Ok(Some(text.clone())),
            Self::Jq(jq) => Ok(jq.eval(&serde_json::Value::Null, vars)?.map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })),
        }
    }

    /// The value as a request body: a literal as its bytes, a jq result as JSON.
    pub fn eval_body(&self, vars: &PollVars<'_>) -> Result<Vec<u8>, ExprError> {
        match self {
            Self::Literal(text) => Ok(text.as_bytes().to_vec()),
            Self::Jq(jq) => Ok(jq
                .eval(&serde_json::Value::Null, vars)?
                .unwrap_or_default()
                .to_string()
                .into_bytes()),
        }
    }
}

impl<'de> Deserialize<'de> for PollValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Spec {
            Literal(String),
            Table(Table),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            jq: String,
        }
        match Spec::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a string or { jq = \"filter\" }"))?
        {
            Spec::Literal(text) => Ok(Self::Literal(text)),
            Spec::Table(Table { jq }) => PollJq::compile(&jq)
                .map(Self::Jq)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A cron schedule (five fields, or six with seconds first), evaluated in UTC.
#[derive(Clone, Debug)]
pub struct Schedule {
    text: String,
    cron: croner::Cron,
}

impl Schedule {
    /// Parses a cron pattern; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build();
        let cron = parser.parse(text).map_err(|e| e.to_string())?;
        // A pattern that never fires (for example 30 February) is refused now, not at run time.
        let schedule = Self {
            text: text.to_owned(),
            cron,
        };
        schedule
            .next_after(std::time::SystemTime::now())
            .ok_or_else(|| "the schedule never fires".to_owned())?;
        Ok(schedule)
    }

    /// The pattern as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first time the schedule fires strictly after `t`, `None` when it never does.
    pub fn next_after(&self, t: std::time::SystemTime) -> Option<std::time::SystemTime> {
        let at = chrono::DateTime::<chrono::Utc>::from(t);
        let next = self.cron.find_next_occurrence(&at, false).ok()?;
        Some(next.into())
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid cron schedule: {e}")))
    }
}

/// Where the cursor stored after a poll comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorFrom {
    /// A filter on the last record the poll read, e.g. `{ record = ".updated_at" }` (records
    /// must then come oldest first).
    Record(PollJq),
    /// A filter on the last answer the poll read, e.g. `{ answer = ".meta.high_water" }`.
    Answer(PollJq),
}

/// How the next page of an answer is found.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// One request per poll.
    #[default]
    None,
    /// The `Link: <…>; rel="next"` header of the answer (RFC 8288); the link must stay under
    /// the connection's `base_url`.
    Link,
    /// A token in the answer: `next` (jq on the answer) gives it, and the next request carries
    /// it in the query parameter `param`; no token (`null`, empty) means the last page.
    Cursor {
        /// jq on the answer giving the next page's token, e.g. `.meta.next_cursor`.
        next: PollJq,
        /// Query parameter the token is sent in, e.g. `page_token`.
        param: String,
    },
    /// A page number in the query parameter `param`, from `start` (default 1); a page without
    /// records (or with fewer than `page_size`) is the last.
    Page {
        /// Query parameter of the page number, e.g. `page`.
        param: String,
        /// Number of the first page (default 1).
        #[serde(default = "one")]
        start: u64,
        /// Records a full page has; a shorter page is the last (default: only an empty page is).
        page_size: Option<u64>,
    },
    /// A record offset in the query parameter `param`, from `start` (default 0), advanced by
    /// the records of each page; a page without records (or with fewer than `page_size`) is the
    /// last.
    Offset {
        /// Query parameter of the offset, e.g. `offset`.
        param: String,
        /// Offset of the first page (default 0).
        #[serde(default)]
        start: u64,
        /// Records a full page has; a shorter page is the last (default: only an empty page is).
        page_size: Option<u64>,
    },
}

/// Waits after failed polls: `initial` after the first failure, doubled per failure in a row,
/// at most `max`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollBackoff {
    /// Wait after the first failed poll (default `1s`).
    #[serde(default = "default_backoff_initial", with = "humantime_serde")]
    pub initial: Duration,
    /// Longest wait between failed polls (default `5m`).
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub max: Duration,
}

impl Default for PollBackoff {
    fn default() -> Self {
        Self {
            initial: default_backoff_initial(),
            max: default_backoff_max(),
        }
    }
}

impl PollBackoff {
    /// The wait after `failures` failed polls in a row (at least one).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// The `poll` table of a source.
#[derive(Clone, Debug, Deserialize)]
pub struct Poll {
    /// Connection the requests go through (a key under `[connections]`): its base URL, auth,
    /// TLS, SSRF guard, retries and audit apply.
    pub connection: String,
    /// HTTP method (default `GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// Path appended to the connection's `base_url`, e.g. `"/v1/orders"`, or `{ jq = … }`.
    pub path: PollValue,
    /// Query parameters, each a string or `{ jq = … }`, e.g.
    /// `{ updated_since = { jq = "$cursor" } }`; one whose value is `null` is left out.
    #[serde(default)]
    pub query: BTreeMap<String, PollValue>,
    /// Request headers, each a string or `{ jq = … }` (the connection adds its auth).
    #[serde(default)]
    pub headers: BTreeMap<String, PollValue>,
    /// Request body, a string or `{ jq = … }` (sent as JSON). Default: none.
    pub body: Option<PollValue>,
    /// Time between polls, e.g. `"30s"` (set `every` or `schedule`).
    #[serde(default, with = "humantime_serde")]
    pub every: Option<Duration>,
    /// Cron schedule in UTC, e.g. `"*/5 * * * *"` (set `every` or `schedule`).
    pub schedule: Option<Schedule>,
    /// jq on the answer giving the list of records, e.g. `.data` (default `.`: the answer is
    /// the list); `null` means no records.
    #[serde(default = "default_records")]
    pub records: PollJq,
    /// jq on a record giving its id, e.g. `.id` (required): a record is stored once per id.
    pub record_id: Option<PollJq>,
    /// jq on a record giving its version, e.g. `.updated_at`: the same record with another
    /// version is a new event. Default: none (a record is an event once).
    pub record_version: Option<PollJq>,
    /// Where the cursor stored after a poll comes from: `{ record = "…" }` on the last record
    /// or `{ answer = "…" }` on the last answer. Default: none (`$cursor` stays
    /// `initial_cursor`).
    pub cursor: Option<CursorFrom>,
    /// `$cursor` before the first successful poll, any TOML value (default none: `null`).
    #[serde(default)]
    pub initial_cursor: serde_json::Value,
    /// How the next page is found (default `{ type = "none" }`: one page per poll).
    #[serde(default)]
    pub pagination: Pagination,
    /// Most pages one poll reads (default 10); the next poll goes on from the stored cursor.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Waits after failed polls (default `{ initial = "1s", max = "5m" }`).
    #[serde(default)]
    pub backoff: PollBackoff,
}

fn one() -> u64 {
    1
}
fn default_method() -> String {
    "GET".to_owned()
}
fn default_records() -> PollJq {
    // "." always compiles.
    PollJq::compile(".").unwrap_or_else(|_| unreachable!("the identity filter compiles"))
}
fn default_max_pages() -> u32 {
    10
}
fn default_backoff_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(300)
}

/// Most pages a poll may be allowed to read.
pub const MAX_PAGES: u32 = 1000;
/// Shortest `every`.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// Checks the `poll` table of source `key` (`sources.NAME`).
pub(super) fn check(
    push: &mut dyn FnMut(String, String),
    key: &str,
    poll: &Poll,
    connections: &BTreeMap<String, super::Connection>,
) {
    let key = format!("{key}.poll");
    if !connections.contains_key(&poll.connection) {
        push(
            format!("{key}.connection"),
            format!("no connection named {:?}", poll.connection),
        );
    }
    if !super::validate::METHODS.contains(&poll.method.as_str()) {
        push(
            format!("{key}.method"),
            format!("unknown HTTP method {:?}", poll.method),
        );
    }
    if let PollValue::Literal(path) = &poll.path
        && !path.starts_with('/')
    {
        push(format!("{key}.path"), "must start with '/'".to_owned());
    }
    for name in poll.headers.keys() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            push(
                format!("{key}.headers.{name}"),
                "must be a valid HTTP header name".to_owned(),
            );
        }
    }
    match (&poll.every, &poll.schedule) {
        (None, None) => push(
            format!("{key}.every"),
            "set `every` (e.g. \"30s\") or `schedule` (cron)".to_owned(),
        ),
        (Some(_), Some(_)) => push(
            format!("{key}.schedule"),
            "set either `every` or `schedule`, not both".to_owned(),
        ),
        (Some(every), None) if *every < MIN_EVERY => {
            push(format!("{key}.every"), "must be at least 1s".to_owned());
        }
        _ => {}
    }
    if poll.record_id.is_none() {
        push(
            format!("{key}.record_id"),
            "is required: a jq filter giving each record's id, e.g. \".id\"".to_owned(),
        );
    }
    if poll.max_pages == 0 || poll.max_pages > MAX_PAGES {
        push(
            format!("{key}.max_pages"),
            format!("must be between 1 and {MAX_PAGES}"),
        );
    }
    if poll.backoff.initial.is_zero() || poll.backoff.initial > poll.backoff.max {
        push(
            format!("{key}.backoff"),
            "`initial` must be greater than 0 and at most `max`".to_owned(),
        );
    }
    let param = match &poll.pagination {
        Pagination::Cursor { param, .. }
        | Pagination::Page { param, .. }
        | Pagination::Offset { param, .. } => Some(param),
        Pagination::None | Pagination::Link => None,
    };
    if param.is_some_and(|p| p.is_empty()) {
        push(
            format!("{key}.pagination.param"),
            "must not be empty".to_owned(),
        );
    }
}

#[cfg(test)]
mod tests;
