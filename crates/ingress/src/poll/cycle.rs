//! One poll of one source: page after page through egress until the last page (or
//! `max_pages`), each page's records handled by the caller before the next page is asked for,
//! and the cursor the poll ends with. Storing is the caller's: the ingress task stores pages and
//! then the cursor; `hookyard poll --dry-run` prints them.

use std::time::{Duration, SystemTime};

use hookyard_core::{
    Integration,
    config::{Poll, PollVars},
    envelope::now_ms,
};
use hookyard_proto::egress::v1::{CallResponse, egress_service_client::EgressServiceClient};
use tonic::transport::Channel;
use url::Url;

use super::{
    PollError,
    answer::{self, Called, Next, Record},
    request::{self, PageRef},
};

/// A call may take this many times its connection's timeout before the poll gives up on egress
/// (egress applies the timeout and its retries itself; this only bounds a hung egress).
const CALL_DEADLINE_FACTOR: u32 = 10;

/// A polling source, ready to poll.
#[derive(Debug, Clone)]
pub struct Poller {
    /// The source's name.
    pub source: String,
    /// Its `poll` table.
    pub poll: Poll,
    /// Its connection's `base_url`.
    pub base_url: Url,
    /// Largest record stored as an event (the source's `max_body_bytes`).
    pub max_record_bytes: u64,
    /// Longest wait for one egress call.
    pub call_deadline: Duration,
}

impl Poller {
    /// The poller of source `name`, `None` when it has no `poll` table or its connection is not
    /// in the file (which validation refuses).
    pub fn new(integration: &Integration, name: &str) -> Option<Self> {
        let source = integration.sources.get(name)?;
        let poll = source.poll.clone()?;
        let connection = integration.connections.get(&poll.connection)?;
        let base_url = Url::parse(&connection.base_url).ok()?;
        Some(Self {
            source: name.to_owned(),
            poll,
            base_url,
            max_record_bytes: source.max_body_bytes,
            call_deadline: connection.timeout * CALL_DEADLINE_FACTOR,
        })
    }

    /// Every polling source of the file.
    pub fn all(integration: &Integration) -> Vec<Self> {
        integration
            .sources
            .keys()
            .filter_map(|name| Self::new(integration, name))
            .collect()
    }
}

/// One page that was read.
#[derive(Debug)]
pub struct Page {
    /// 1 for the first page of the poll.
    pub number: u32,
    /// Method, path and query of the request.
    pub request: String,
    /// Its records, in the partner's order.
    pub records: Vec<Record>,
}

/// What a poll read.
#[derive(Debug)]
pub struct Outcome {
    /// Pages read.
    pub pages: u32,
    /// Records read, over all pages.
    pub records: usize,
    /// The cursor to store (the one the poll started from when nothing moved it).
    pub cursor: serde_json::Value,
    /// Whether the poll stopped at `max_pages` with more pages left.
    pub page_limit: bool,
}

/// One poll in progress: ask for a page with [`Walk::next_page`] until it gives `None`, handling
/// each page (storing it, printing it) before asking for the next; then [`Walk::finish`] gives
/// the cursor, worth storing only once every page was handled.
pub struct Walk<'a> {
    poller: &'a Poller,
    cursor: serde_json::Value,
    now: i64,
    page: Option<PageRef>,
    last_record: Option<serde_json::Value>,
    last_answer: Option<serde_json::Value>,
    outcome: Outcome,
}

impl<'a> Walk<'a> {
    /// A poll of `poller` from `cursor`, started at `started`.
    pub fn new(poller: &'a Poller, cursor: serde_json::Value, started: SystemTime) -> Self {
        let now = started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Self {
            poller,
            now,
            page: Some(PageRef::first(&poller.poll.pagination)),
            last_record: None,
            last_answer: None,
            outcome: Outcome {
                pages: 0,
                records: 0,
                cursor: cursor.clone(),
                page_limit: false,
            },
            cursor,
        }
    }

    /// Reads the next page; `None` after the last one (or `max_pages`).
    pub async fn next_page(
        &mut self,
        egress: &EgressServiceClient<Channel>,
    ) -> Result<Option<Page>, PollError> {
        let Some(page) = self.page.take() else {
            return Ok(None);
        };
        let (poller, poll) = (self.poller, &self.poller.poll);
        let vars = PollVars {
            cursor: &self.cursor,
            now: self.now,
        };
        let call = request::build(&poller.source, poll, &vars, &page)?;
        let path = call.path.clone();
        let response = call_egress(egress, call, poller.call_deadline).await?;
        let answer = answer::parse(&response)?;
        let called = Called {
            method: &poll.method,
            path: &path,
            received_at_ms: now_ms(),
        };
        let records = answer::records(
            &poller.source,
            poll,
            &answer,
            &vars,
            &called,
            poller.max_record_bytes,
        )?;
        let base = joinable(&poller.base_url);
        let request_url = base
            .join(path.trim_start_matches('/'))
            .unwrap_or_else(|_| base.clone());
        let next = Next {
            pagination: &poll.pagination,
            page: &page,
            records: records.len(),
            base: &base,
            request: &request_url,
        }
        .find(&response, &answer, &vars)?;
        self.outcome.pages += 1;
        self.outcome.records += records.len();
        if let Some(record) = records.last() {
            self.last_record = Some(record.value.clone());
        }
        self.last_answer = Some(answer);
        self.page = match next {
            Some(_) if self.outcome.pages >= poll.max_pages => {
                self.outcome.page_limit = true;
                None
            }
            next => next,
        };
        Ok(Some(Page {
            number: self.outcome.pages,
            request: format!("{} {path}", poll.method),
            records,
        }))
    }

    /// What the poll read and the cursor it ends with.
    pub fn finish(mut self) -> Result<Outcome, PollError> {
        let vars = PollVars {
            cursor: &self.cursor,
            now: self.now,
        };
        if let Some(cursor) = answer::cursor(
            self.poller.poll.cursor.as_ref(),
            self.last_record.as_ref(),
            self.last_answer.as_ref(),
            &vars,
        )? {
            self.outcome.cursor = cursor;
        }
        Ok(self.outcome)
    }
}

/// `base` with a trailing `/`, so that joining a relative path keeps its last segment.
fn joinable(base: &Url) -> Url {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base
}

async fn call_egress(
    egress: &EgressServiceClient<Channel>,
    call: hookyard_proto::egress::v1::CallRequest,
    deadline: Duration,
) -> Result<CallResponse, PollError> {
    let mut request = tonic::Request::new(call);
    request.set_timeout(deadline);
    let response = egress
        .clone()
        .call(request)
        .await
        .map_err(PollError::Egress)?
        .into_inner();
    if !(200..300).contains(&response.status) {
        return Err(PollError::Status(response.status));
    }
    Ok(response)
}
