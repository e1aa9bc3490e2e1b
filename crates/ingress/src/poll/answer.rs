//! Reading one answer of the partner: its records (each with its id, version and event), where
//! the next page is, and the cursor a poll ending here stores.

use hookyard_core::{
    config::{CursorFrom, Pagination, Poll, PollJq, PollVars},
    envelope,
};
use hookyard_proto::{
    egress::v1::CallResponse,
    event::v1::{Envelope, Header},
};
use url::Url;

use super::{PollError, link, request::PageRef};

/// One record of an answer and the event it becomes.
#[derive(Debug, Clone)]
pub struct Record {
    /// `record_id`'s value; `None` when it gave none (the event id then hashes the record).
    pub id: Option<String>,
    /// `record_version`'s value, when the source has one and it gave one.
    pub version: Option<String>,
    /// The record as the partner sent it.
    pub value: serde_json::Value,
    /// The event stored for it in `HOOKYARD_IN`.
    pub event: Envelope,
}

/// The parts of the request an event keeps.
pub struct Called<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path and query sent to egress.
    pub path: &'a str,
    /// Unix milliseconds at which the answer arrived.
    pub received_at_ms: i64,
}

/// The answer's body as JSON. serde_json stops at 128 levels of nesting, so a hostile answer
/// cannot exhaust the stack here or in the filters that run on it.
pub fn parse(response: &CallResponse) -> Result<serde_json::Value, PollError> {
    serde_json::from_slice(&response.body).map_err(|e| PollError::Answer {
        what: "the answer is not JSON",
        detail: e.to_string(),
    })
}

fn run(
    jq: &PollJq,
    input: &serde_json::Value,
    vars: &PollVars<'_>,
    what: &'static str,
) -> Result<Option<serde_json::Value>, PollError> {
    jq.eval(input, vars).map_err(|e| PollError::Answer {
        what,
        detail: e.to_string(),
    })
}

fn text(value: serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if s.is_empty() => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// The records of `answer`, each with its event.
pub fn records(
    source: &str,
    poll: &Poll,
    answer: &serde_json::Value,
    vars: &PollVars<'_>,
    called: &Called<'_>,
    max_record_bytes: u64,
) -> Result<Vec<Record>, PollError> {
    let items = match run(&poll.records, answer, vars, "the records filter failed")? {
        None => Vec::new(),
        Some(serde_json::Value::Array(items)) => items,
        Some(_) => {
            return Err(PollError::Answer {
                what: "the records filter did not give a list",
                detail: poll.records.source().to_owned(),
            });
        }
    };
    let (path, query) = called.path.split_once('?').unwrap_or((called.path, ""));
    let mut out = Vec::with_capacity(items.len());
    for value in items {
        let id = match &poll.record_id {
            Some(jq) => run(jq, &value, vars, "the record_id filter failed")?.and_then(text),
            None => None,
        };
        let version = match &poll.record_version {
            Some(jq) => run(jq, &value, vars, "the record_version filter failed")?.and_then(text),
            None => None,
        };
        let body = value.to_string().into_bytes();
        if body.len() as u64 > max_record_bytes {
            return Err(PollError::RecordTooLarge {
                record_id: id.unwrap_or_default(),
                bytes: body.len(),
                limit: max_record_bytes,
            });
        }
        let dedup_key = dedup_key(id.as_deref(), version.as_deref(), &body);
        let event = Envelope {
            id: envelope::event_id(source, &dedup_key),
            source: source.to_owned(),
            received_at_ms: called.received_at_ms,
            method: called.method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: vec![Header {
                name: "content-type".to_owned(),
                value: b"application/json".to_vec(),
            }],
            body,
            dedup_key,
            ..Default::default()
        };
        out.push(Record {
            id,
            version,
            value,
            event,
        });
    }
    Ok(out)
}

/// The dedup key of a record: its id and version as a JSON array (so no choice of characters
/// in either can make two records collide); a hash of the record when it has no id.
fn dedup_key(id: Option<&str>, version: Option<&str>, body: &[u8]) -> String {
    match (id, version) {
        (None, _) => envelope::body_dedup_key(body),
        (Some(id), None) => format!("poll:{}", serde_json::json!([id])),
        (Some(id), Some(version)) => format!("poll:{}", serde_json::json!([id, version])),
    }
}

/// Where the page after this one is, `None` on the last page.
pub struct Next<'a> {
    /// The source's pagination.
    pub pagination: &'a Pagination,
    /// The page that was read.
    pub page: &'a PageRef,
    /// How many records it had.
    pub records: usize,
    /// The connection's `base_url` and the URL that was called.
    pub base: &'a Url,
    /// The URL that was called.
    pub request: &'a Url,
}

impl Next<'_> {
    /// The next page of `answer`/`response`.
    pub fn find(
        &self,
        response: &CallResponse,
        answer: &serde_json::Value,
        vars: &PollVars<'_>,
    ) -> Result<Option<PageRef>, PollError> {
        let short = |size: &Option<u64>| {
            self.records == 0 || size.is_some_and(|size| (self.records as u64) < size)
        };
        let number = |page: &PageRef| match page {
            PageRef::Param { value, .. } => value.parse::<u64>().unwrap_or(0),
            _ => 0,
        };
        Ok(match self.pagination {
            Pagination::None => None,
            Pagination::Link => {
                let values: Vec<&str> = response
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("link"))
                    .map(|h| h.value.as_str())
                    .collect();
                link::next_path(&values, self.base, self.request)
                    .map_err(PollError::Link)?
                    .map(PageRef::Path)
            }
            Pagination::Cursor { next, param } => {
                run(next, answer, vars, "the pagination next filter failed")?
                    .and_then(text)
                    .map(|value| PageRef::Param {
                        name: param.clone(),
                        value,
                    })
            }
            Pagination::Page {
                param, page_size, ..
            } => (!short(page_size)).then(|| PageRef::Param {
                name: param.clone(),
                value: (number(self.page) + 1).to_string(),
            }),
            Pagination::Offset {
                param, page_size, ..
            } => (!short(page_size)).then(|| PageRef::Param {
                name: param.clone(),
                value: (number(self.page) + self.records as u64).to_string(),
            }),
        })
    }
}

/// The cursor to store after a poll that read `last_record` (the last record of its last page
/// with records) and `last_answer`; `None` keeps the cursor it started from.
pub fn cursor(
    from: Option<&CursorFrom>,
    last_record: Option<&serde_json::Value>,
    last_answer: Option<&serde_json::Value>,
    vars: &PollVars<'_>,
) -> Result<Option<serde_json::Value>, PollError> {
    let (jq, input) = match from {
        Some(CursorFrom::Record(jq)) => (jq, last_record),
        Some(CursorFrom::Answer(jq)) => (jq, last_answer),
        None => return Ok(None),
    };
    match input {
        Some(input) => run(jq, input, vars, "the cursor filter failed"),
        None => Ok(None),
    }
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
