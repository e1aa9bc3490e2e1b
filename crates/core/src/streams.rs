//! JetStream stream and subject names, and the stream settings (docs/architecture.md).
//!
//! Names are spelled here and nowhere else. A [`Topology`] carries an optional namespace so
//! several isolated hookyards (tests, tenants) can share one NATS: with namespace `t1` the
//! streams are `T1_HOOKYARD_IN`, … and the subjects `t1.hookyard.in.<source>`, …; without one
//! they are exactly the names in docs/architecture.md.
//!
//! Duplicates are absorbed in two layers. Every stream has a `duplicate_window` (2 minutes):
//! JetStream stores a repeated `Nats-Msg-Id` once, which collapses a publish retried after a
//! lost ack. A sender that retries later (hours or days later, after a 503 it never saw or a
//! timeout on its side) is caught by the KV bucket `HOOKYARD_DEDUP`, which remembers accepted
//! event ids for [`StreamLimits::dedup_window`] (7 days): ingress answers such a retry 202 with
//! the same id without storing it again, while the record is within the source's own
//! `dedup_window` (at most the bucket's, and off by default for a source keyed by the body
//! hash).
//!
//! Ownership: ingress creates or updates `HOOKYARD_IN` at start; the router creates or updates
//! `HOOKYARD_IN`, `HOOKYARD_WORK`, `HOOKYARD_DLQ` and `HOOKYARD_WAIT` (it reads the first, writes
//! the others, and moves what waits in the last back to the work queue);
//! a worker creates or updates `HOOKYARD_WORK` and `HOOKYARD_DLQ` so it can bind its consumer
//! whichever service starts first, and purges its handler's done items (see
//! [`WorkRetention`]). `HOOKYARD_AUDIT` holds what happened to events, never holding up a
//! call, with `discard: old`: egress (when auditing is on) publishes one record per outbound attempt on
//! `hookyard.audit.egress.<connection>.<event id>`, workers one outcome per delivery on
//! `hookyard.audit.worker.<handler>.<outcome>.<event id>`, and the router's admin API one record
//! per replay on `hookyard.audit.replay`; each of them creates or updates the stream. The ids in
//! those subjects let the admin API find an event's records with a filter instead of a scan.
//! Ingress, when the integration file has polling sources, creates or updates the
//! `HOOKYARD_POLL_CURSORS` and `HOOKYARD_POLL_LEASES` buckets and stores each polled record's
//! event under its own subject `hookyard.in.<source>.<event id>` (see
//! [`Topology::in_event_subject`]): the long-window dedup of records a later poll reads again.
//! Workers keep, in the `HOOKYARD_RETURNS` bucket, how many times each work message was handed
//! back unstarted at a shutdown, so such deliveries do not spend the handler's `max_deliver`,
//! and, in the `HOOKYARD_STEPS` bucket, the results of the steps a work item's delivery
//! completed, so a retry resumes at the step that failed.
//! All of them call the same functions here, so the settings they apply are identical and no
//! start order is required.

use std::time::Duration;

use async_nats::jetstream::{
    self, kv,
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};

const IN: &str = "HOOKYARD_IN";
const DEDUP: &str = "HOOKYARD_DEDUP";
const WORK: &str = "HOOKYARD_WORK";
const WAIT: &str = "HOOKYARD_WAIT";
const DLQ: &str = "HOOKYARD_DLQ";
const AUDIT: &str = "HOOKYARD_AUDIT";
const TOKENS: &str = "HOOKYARD_TOKENS";
const POLL_CURSORS: &str = "HOOKYARD_POLL_CURSORS";
const POLL_LEASES: &str = "HOOKYARD_POLL_LEASES";
const RETURNS: &str = "HOOKYARD_RETURNS";
const STEPS: &str = "HOOKYARD_STEPS";
/// Subject suffix of the dead-letter entries of events no route matched.
pub const UNROUTED: &str = "unrouted";

/// Stream limits. Defaults are the documented ones; tests shrink them to exercise full streams.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// How long accepted events stay replayable in `HOOKYARD_IN` (at least 7 days).
    pub in_max_age: Duration,
    /// Size cap of `HOOKYARD_IN`; past it ingress answers 503 (`discard: new`), never evicts.
    pub in_max_bytes: i64,
    /// Window in which a repeated `Nats-Msg-Id` is stored once by the stream itself: covers
    /// publish retries, not a sender retrying much later (see `dedup_window`).
    pub duplicate_window: Duration,
    /// How long the `HOOKYARD_DEDUP` bucket remembers an accepted event id, so a sender's
    /// retry within it (and within its source's `dedup_window`) is answered with the same id
    /// and not stored again.
    pub dedup_window: Duration,
    /// Size cap of the `HOOKYARD_DEDUP` bucket.
    pub dedup_max_bytes: i64,
    /// Size cap of the work queue.
    pub work_max_bytes: i64,
    /// Work items one handler may have in `HOOKYARD_WORK` (a per-subject cap, `discard: new`
    /// per subject), so a handler whose workers are absent or slow cannot fill the queue the
    /// others share; the router parks what does not fit in `HOOKYARD_WAIT`.
    pub work_max_per_handler: i64,
    /// Size cap of `HOOKYARD_WAIT`, the work items of handlers at their cap.
    pub wait_max_bytes: i64,
    /// How long dead letters are kept.
    pub dlq_max_age: Duration,
    /// Size cap of the dead-letter stream.
    pub dlq_max_bytes: i64,
    /// How long egress's audit records of outbound attempts are kept.
    pub audit_max_age: Duration,
    /// Size cap of `HOOKYARD_AUDIT`; past it the oldest records go (`discard: old`).
    pub audit_max_bytes: i64,
    /// Size cap of the `HOOKYARD_TOKENS` bucket (encrypted OAuth 2.0 tokens, consent states
    /// and refresh locks of the token service).
    pub tokens_max_bytes: i64,
    /// Size cap of the `HOOKYARD_POLL_CURSORS` bucket (one small record per polling source).
    pub poll_cursors_max_bytes: i64,
    /// Size cap of the `HOOKYARD_POLL_LEASES` bucket (one lease per polling source).
    pub poll_leases_max_bytes: i64,
    /// Size cap of the `HOOKYARD_RETURNS` bucket (one small entry per work message a
    /// shutdown handed back unstarted, until its delivery ends).
    pub returns_max_bytes: i64,
    /// Size cap of the `HOOKYARD_STEPS` bucket (the results of completed steps of work items
    /// whose delivery has not ended; a partner answer can be large).
    pub steps_max_bytes: i64,
    /// Replicas of every stream and bucket: 1 on a single server, 3 on a three-node cluster
    /// (each message is then on a majority of the nodes before it is acknowledged).
    pub replicas: usize,
}

/// Default of [`StreamLimits::work_max_per_handler`]: at a few KiB per item, a fraction of the
/// work queue's bytes, so several stalled handlers still leave room for the rest.
pub const DEFAULT_WORK_MAX_PER_HANDLER: i64 = 100_000;

impl StreamLimits {
    /// How long the `HOOKYARD_DEDUP` bucket keeps an event id by default: the longest a
    /// source's `dedup_window` may be, and that window's default for a source with a sender id.
    pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
}

/// JetStream reserves each stream's `max_bytes` against the server's `max_file_store` (8 GB in
/// `deploy/nats/nats-server.conf`) when the stream is created, so the defaults together stay
/// under it: 2 GiB + 1 GiB (work) + 1 GiB (wait) + 1 GiB + 256 MiB + 256 MiB + 64 MiB + 36 MiB
/// (the KV buckets are streams too), + 256 MiB for egress's `HOOKYARD_AUDIT`.
impl Default for StreamLimits {
    fn default() -> Self {
        const GIB: i64 = 1024 * 1024 * 1024;
        Self {
            in_max_age: Duration::from_secs(7 * 24 * 3600),
            in_max_bytes: 2 * GIB,
            duplicate_window: Duration::from_secs(120),
            dedup_window: Self::DEFAULT_DEDUP_WINDOW,
            // An entry is ~150 bytes on disk: room for well over a million ids a week.
            dedup_max_bytes: 256 * 1024 * 1024,
            work_max_bytes: GIB,
            work_max_per_handler: DEFAULT_WORK_MAX_PER_HANDLER,
            wait_max_bytes: GIB,
            dlq_max_age: Duration::from_secs(30 * 24 * 3600),
            dlq_max_bytes: GIB,
            audit_max_age: Duration::from_secs(30 * 24 * 3600),
            // A record is ~400 bytes: over half a million attempts.
            audit_max_bytes: 256 * 1024 * 1024,
            // A record is under 8 KiB and there is one per connection, plus short-lived
            // consent states and locks.
            tokens_max_bytes: 64 * 1024 * 1024,
            poll_cursors_max_bytes: 16 * 1024 * 1024,
            poll_leases_max_bytes: 4 * 1024 * 1024,
            returns_max_bytes: 16 * 1024 * 1024,
            steps_max_bytes: 256 * 1024 * 1024,
            replicas: 1,
        }
    }
}

async fn ensure_bucket(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, BucketSetupError> {
    let bucket = config.bucket.clone();
    js.create_or_update_key_value(config)
        .await
        .map_err(|source| BucketSetupError {
            bucket,
            source: source.into(),
        })
}

/// Names of hookyard's streams, subjects and consumers within one namespace.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    namespace: String,
    /// Limits applied when streams are created or updated.
    pub limits: StreamLimits,
}

impl Topology {
    /// A topology in `namespace` (empty for the plain names).
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            limits: StreamLimits::default(),
        }
    }

    /// The namespace, empty when none.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn stream(&self, base: &str) -> String {
        if self.namespace.is_empty() {
            base.to_owned()
        } else {
            format!("{}_{base}", self.namespace.to_uppercase())
        }
    }

    fn subject(&self, rest: &str) -> String {
        if self.namespace.is_empty() {
            format!("hookyard.{rest}")
        } else {
            format!("{}.hookyard.{rest}", self.namespace)
        }
    }

    /// Stream of every accepted event.
    pub fn in_stream(&self) -> String {
        self.stream(IN)
    }
    /// Stream of the work, one message per (event, handler).
    pub fn work_stream(&self) -> String {
        self.stream(WORK)
    }
    /// Dead-letter stream.
    pub fn dlq_stream(&self) -> String {
        self.stream(DLQ)
    }
    /// KV bucket remembering accepted event ids for `dedup_window` (its stream is
    /// `KV_<bucket>`).
    pub fn dedup_bucket(&self) -> String {
        self.stream(DEDUP)
    }
    /// Stream JetStream keeps the dedup bucket in.
    pub fn dedup_stream(&self) -> String {
        format!("KV_{}", self.dedup_bucket())
    }
    /// Subject an event of `source` is stored under.
    pub fn in_subject(&self, source: &str) -> String {
        self.subject(&format!("in.{source}"))
    }
    /// Subject the event of a polled record is stored under: one subject per event, so the
    /// stream itself knows, for as long as it keeps the event (`in_max_age`), that the record
    /// was stored, and refuses it again (`Nats-Expected-Last-Subject-Sequence: 0`) however much
    /// later a poll reads it again. `event_id` is `evt_` and hex digits, a safe subject token.
    pub fn in_event_subject(&self, source: &str, event_id: &str) -> String {
        self.subject(&format!("in.{source}.{event_id}"))
    }
    /// Every subject events of `source` are stored under: `hookyard.in.<source>` (webhooks) and
    /// `hookyard.in.<source>.<event id>` (polled records), for filtering a consumer by source.
    pub fn in_source_subjects(&self, source: &str) -> [String; 2] {
        [
            self.in_subject(source),
            self.subject(&format!("in.{source}.>")),
        ]
    }
    /// The source of a message in the in stream, from its subject (`None` for another subject).
    pub fn source_of_in_subject<'a>(&self, subject: &'a str) -> Option<&'a str> {
        let rest = subject.strip_prefix(&self.in_subject(""))?;
        rest.split('.').next().filter(|s| !s.is_empty())
    }
    /// Subject of the work for `handler`.
    pub fn work_subject(&self, handler: &str) -> String {
        self.subject(&format!("work.{handler}"))
    }
    /// Stream of the work items of handlers at their cap in the work queue.
    pub fn wait_stream(&self) -> String {
        self.stream(WAIT)
    }
    /// Subject of `handler`'s work items waiting for room in the work queue.
    pub fn wait_subject(&self, handler: &str) -> String {
        self.subject(&format!("wait.{handler}"))
    }
    /// Durable consumer the routers share to move `handler`'s waiting items to the work queue.
    pub fn wait_consumer(&self, handler: &str) -> String {
        format!("wait-{handler}")
    }
    /// Dead-letter subject of `handler`.
    pub fn dlq_subject(&self, handler: &str) -> String {
        self.subject(&format!("dlq.{handler}"))
    }
    /// Dead-letter subject of events no route matched.
    pub fn unrouted_subject(&self) -> String {
        self.dlq_subject(UNROUTED)
    }
    /// Core NATS subject (no stream) a handler's `reply` step answers the event `event_id` on,
    /// for the ingress instance holding a `sync` source's request.
    pub fn reply_subject(&self, event_id: &str) -> String {
        self.subject(&format!("reply.{event_id}"))
    }
    /// KV bucket of the token service: encrypted token records (`token.<connection>`),
    /// one-time consent states (`flow.<state>`) and refresh locks (`lock.<connection>`).
    pub fn tokens_bucket(&self) -> String {
        self.stream(TOKENS)
    }
    /// Core NATS subject (no stream) the token service publishes on when a connection needs a
    /// person's consent again (the authorization server answered `invalid_grant`); the body is
    /// JSON `{"connection": …, "reason": …}`.
    pub fn token_needs_consent_subject(&self) -> String {
        self.subject("token.needs_consent")
    }
    /// KV bucket of ingress's polling sources: the cursor and time of the last successful poll,
    /// under the source's name.
    pub fn poll_cursors_bucket(&self) -> String {
        self.stream(POLL_CURSORS)
    }
    /// KV bucket of the pollers' leases: the replica polling a source holds its key, written
    /// with a TTL and renewed while it polls; when the holder dies the key expires and another
    /// replica takes it.
    pub fn poll_leases_bucket(&self) -> String {
        self.stream(POLL_LEASES)
    }
    /// Stream of egress's audit records, one per outbound attempt.
    pub fn audit_stream(&self) -> String {
        self.stream(AUDIT)
    }
    /// Subject egress publishes the audit record of an attempt on `connection` for `event_id`
    /// (empty when the call was made for no event) on.
    pub fn audit_egress_subject(&self, connection: &str, event_id: &str) -> String {
        self.subject(&format!(
            "audit.egress.{}.{}",
            subject_token(connection),
            subject_token(event_id)
        ))
    }
    /// Filter over egress's audit records: of one connection and/or one event, or all.
    pub fn audit_egress_filter(&self, connection: Option<&str>, event_id: Option<&str>) -> String {
        self.subject(&format!(
            "audit.egress.{}.{}",
            connection.map_or("*".to_owned(), subject_token),
            event_id.map_or("*".to_owned(), subject_token)
        ))
    }
    /// Subject a worker publishes the outcome of a delivery of `event_id` to `handler` on;
    /// `outcome` is `handled`, `retry` or `dead_letter`.
    pub fn audit_worker_subject(&self, handler: &str, outcome: &str, event_id: &str) -> String {
        self.subject(&format!(
            "audit.worker.{}.{}.{}",
            subject_token(handler),
            subject_token(outcome),
            subject_token(event_id)
        ))
    }
    /// Filter over the workers' outcome records: of one handler, one outcome and/or one event.
    pub fn audit_worker_filter(
        &self,
        handler: Option<&str>,
        outcome: Option<&str>,
        event_id: Option<&str>,
    ) -> String {
        let token = |part: Option<&str>| part.map_or("*".to_owned(), subject_token);
        self.subject(&format!(
            "audit.worker.{}.{}.{}",
            token(handler),
            token(outcome),
            token(event_id)
        ))
    }
    /// Subject the router records every replay made through the admin API on.
    pub fn audit_replay_subject(&self) -> String {
        self.subject("audit.replay")
    }
    /// Filters over `HOOKYARD_IN` selecting the events of `source` (all sources when `None`).
    /// Webhook events carry no id in their subject, so a lookup by id filters by the
    /// `Hookyard-Event-Id` header as well.
    pub fn in_filter(&self, source: Option<&str>) -> Vec<String> {
        match source {
            Some(source) => self.in_source_subjects(source).into(),
            None => vec![self.subject("in.>")],
        }
    }
    /// Durable consumer the routers share on the in stream.
    pub fn router_consumer(&self) -> String {
        "router".to_owned()
    }
    /// Durable consumer every replica of a handler's workers shares.
    pub fn handler_consumer(&self, handler: &str) -> String {
        format!("handler-{handler}")
    }

    /// Settings of `HOOKYARD_IN`: limits retention, file storage, `discard: new`.
    pub fn in_config(&self) -> stream::Config {
        stream::Config {
            name: self.in_stream(),
            subjects: vec![self.subject("in.>")],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            discard: DiscardPolicy::New,
            max_age: self.limits.in_max_age,
            max_bytes: self.limits.in_max_bytes,
            duplicate_window: self.limits.duplicate_window,
            description: Some("hookyard: every accepted event, raw, replayable".to_owned()),
            // Ingress stores events in atomic batches (group commit).
            allow_atomic_publish: true,
            num_replicas: self.limits.replicas,
            ..Default::default()
        }
    }

    /// Settings of `HOOKYARD_WORK`: limits retention (see [`WorkRetention`]), file storage.
    pub fn work_config(&self) -> stream::Config {
        stream::Config {
            name: self.work_stream(),
            subjects: vec![self.subject("work.>")],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            // A full work queue must push back on the router (which then retries), not drop work.
            discard: DiscardPolicy::New,
            max_bytes: self.limits.work_max_bytes,
            // One handler's backlog stops at its cap; the router parks the rest in the wait
            // stream instead of holding the events every handler's routing waits behind.
            max_messages_per_subject: self.limits.work_max_per_handler,
            discard_new_per_subject: true,
            duplicate_window: self.limits.duplicate_window,
            description: Some("hookyard: one message per (event, handler)".to_owned()),
            // The router stores work items in atomic batches (group commit).
            allow_atomic_publish: true,
            num_replicas: self.limits.replicas,
            ..Default::default()
        }
    }

    /// Settings of `HOOKYARD_WAIT`: work-queue retention, file storage, `discard: new`; one
    /// subject per handler, each read by that handler's mover in the router.
    pub fn wait_config(&self) -> stream::Config {
        stream::Config {
            name: self.wait_stream(),
            subjects: vec![self.subject("wait.>")],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            discard: DiscardPolicy::New,
            max_bytes: self.limits.wait_max_bytes,
            duplicate_window: self.limits.duplicate_window,
            description: Some(
                "hookyard: work items of handlers at their cap, until there is room".to_owned(),
            ),
            num_replicas: self.limits.replicas,
            ..Default::default()
        }
    }

    /// Settings of `HOOKYARD_DLQ`: limits retention with a long age.
    pub fn dlq_config(&self) -> stream::Config {
        stream::Config {
            name: self.dlq_stream(),
            subjects: vec![self.subject("dlq.>")],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            discard: DiscardPolicy::New,
            max_age: self.limits.dlq_max_age,
            max_bytes: self.limits.dlq_max_bytes,
            duplicate_window: self.limits.duplicate_window,
            description: Some("hookyard: failed or unroutable events with the reason".to_owned()),
            num_replicas: self.limits.replicas,
            ..Default::default()
        }
    }

    /// Settings of `HOOKYARD_AUDIT`: limits retention, file storage, `discard: old` (an audit
    /// record must never hold up a partner call).
    pub fn audit_config(&self) -> stream::Config {
        stream::Config {
            name: self.audit_stream(),
            subjects: vec![self.subject("audit.>")],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            discard: DiscardPolicy::Old,
            max_age: self.limits.audit_max_age,
            max_bytes: self.limits.audit_max_bytes,
            description: Some("hookyard: every outbound attempt of egress, redacted".to_owned()),
            // Egress's and workers' records go out in atomic batches.
            allow_atomic_publish: true,
            num_replicas: self.limits.replicas,
            ..Default::default()
        }
    }

    /// Creates or updates `HOOKYARD_AUDIT` (egress with auditing on, workers, the admin API).
    pub async fn ensure_audit(&self, js: &jetstream::Context) -> Result<(), StreamSetupError> {
        ensure(js, self.audit_config()).await
    }

    /// Settings of the `HOOKYARD_DEDUP` bucket: one value per event id (history 1), file
    /// storage, entries expire after `dedup_window`.
    pub fn dedup_config(&self) -> kv::Config {
        kv::Config {
            bucket: self.dedup_bucket(),
            description: "hookyard: accepted event ids, for sender retries".to_owned(),
            history: 1,
            max_age: self.limits.dedup_window,
            max_bytes: self.limits.dedup_max_bytes,
            // The value is a timestamp; the limit covers the key and headers as well.
            max_value_size: 1024,
            storage: StorageType::File,
            num_replicas: self.limits.replicas,
            ..Default::default()
        }
    }

    /// Settings of the `HOOKYARD_TOKENS` bucket: history 1, file storage, no age limit (a
    /// refresh token lives until revoked), per-key TTLs allowed (consent states and locks
    /// expire on their own).
    pub fn tokens_config(&self) -> kv::Config {
        kv::Config {
            bucket: self.tokens_bucket(),
            description: "hookyard: encrypted OAuth 2.0 tokens, consent states, refresh locks"
                .to_owned(),
            history: 1,
            max_bytes: self.limits.tokens_max_bytes,
            max_value_size: 64 * 1024,
            storage: StorageType::File,
            // Enables per-message TTLs; the markers a TTL leaves behind last this long.
            limit_markers: Some(Duration::from_secs(60)),
            num_replicas: self.limits.replicas,
            ..Default::default()
        }
    }

    /// Creates or updates the `HOOKYARD_TOKENS` bucket and returns its handle.
    pub async fn ensure_tokens(
        &self,
        js: &jetstream::Context,
    ) -> Result<kv::Store, BucketSetupError> {
        let config = self.tokens_config();
        let bucket = config.bucket.clone();
        js.create_or_update_key_value(config)
            .await
            .map_err(|source| BucketSetupError {
                bucket,
                source: source.into(),
            })
    }

    /// Settings of the `HOOKYARD_POLL_CURSORS` bucket: history 1, file storage, no age limit (a
    /// cursor lives as long as its source).
    pub fn poll_cursors_config(&self) -> kv::Config {
        kv::Config {
            bucket: self.poll_cursors_bucket(),
            description: "hookyard: cursors of polling sources".to_owned(),
            history: 1,
            max_bytes: self.limits.poll_cursors_max_bytes,
            max_value_size: 64 * 1024,
            storage: StorageType::File,
            num_replicas: self.limits.replicas,
            ..Default::default()
        }
    }

    /// Settings of the `HOOKYARD_POLL_LEASES` bucket: history 1, file storage, per-key TTLs (a
    /// lease nobody renews expires).
    pub fn poll_leases_config(&self) -> kv::Config {
        kv::Config {
            bucket: self.poll_leases_bucket(),
            description: "hookyard: which replica polls each polling source".to_owned(),
            history: 1,
            max_bytes: self.limits.poll_leases_max_bytes,
            max_value_size: 1024,
            storage: StorageType::File,
            limit_markers: Some(Duration::from_secs(60)),
            num_replicas: self.limits.replicas,
            ..Default::default()
        }
    }

    /// KV bucket counting, per work message, the deliveries a shutdown handed back unstarted.
    pub fn returns_bucket(&self) -> String {
        self.stream(RETURNS)
    }

    /// Key of the work message at `sequence` of `HOOKYARD_WORK` for `handler` in
    /// [`Topology::returns_bucket`].
    pub fn returns_key(&self, handler: &str, sequence: u64) -> String {
        format!("{handler}.{sequence}")
    }

    /// Settings of the `HOOKYARD_RETURNS` bucket: history 1, file storage; an entry outlives
    /// any work message it counts for (the work queue keeps nothing that long unhandled).
    pub fn returns_config(&self) -> kv::Config {
        kv::Config {
            bucket: self.returns_bucket(),
            description: "hookyard: deliveries handed back unstarted at a worker's shutdown"
                .to_owned(),
            history: 1,
            max_age: Duration::from_secs(30 * 24 * 3600),
            max_bytes: self.limits.returns_max_bytes,
            max_value_size: 64,
            storage: StorageType::File,
            num_replicas: self.limits.replicas,
            ..Default::default()
        }
    }

    /// Creates or updates the `HOOKYARD_RETURNS` bucket and returns its handle.
    pub async fn ensure_returns(
        &self,
        js: &jetstream::Context,
    ) -> Result<kv::Store, BucketSetupError> {
        ensure_bucket(js, self.returns_config()).await
    }

    /// KV bucket holding, per work message, the results of the steps its deliveries completed.
    pub fn steps_bucket(&self) -> String {
        self.stream(STEPS)
    }

    /// Key of the work message at `sequence` of `HOOKYARD_WORK` for `handler` in
    /// [`Topology::steps_bucket`].
    pub fn steps_key(&self, handler: &str, sequence: u64) -> String {
        format!("{handler}.{sequence}")
    }

    /// Settings of the `HOOKYARD_STEPS` bucket: history 1, file storage, values up to the
    /// server's message limit; an entry outlives any work message it is for, and is removed
    /// when the delivery ends.
    pub fn steps_config(&self) -> kv::Config {
        kv::Config {
            bucket: self.steps_bucket(),
            description: "hookyard: results of the completed steps of work items in delivery"
                .to_owned(),
            history: 1,
            max_age: Duration::from_secs(30 * 24 * 3600),
            max_bytes: self.limits.steps_max_bytes,
            storage: StorageType::File,
            // Per-message TTL, so the marker a removal leaves expires instead of filling the
            // bucket with one marker per work item.
            limit_markers: Some(Duration::from_secs(60)),
            num_replicas: self.limits.replicas,
            ..Default::default()
        }
    }

    /// Creates or updates the `HOOKYARD_STEPS` bucket and returns its handle.
    pub async fn ensure_steps(
        &self,
        js: &jetstream::Context,
    ) -> Result<kv::Store, BucketSetupError> {
        ensure_bucket(js, self.steps_config()).await
    }

    /// Creates or updates the poll buckets and returns the cursors' and the leases' handles.
    pub async fn ensure_poll(
        &self,
        js: &jetstream::Context,
    ) -> Result<(kv::Store, kv::Store), BucketSetupError> {
        let mut stores = Vec::with_capacity(2);
        for config in [self.poll_cursors_config(), self.poll_leases_config()] {
            let bucket = config.bucket.clone();
            let store = js
                .create_or_update_key_value(config)
                .await
                .map_err(|source| BucketSetupError {
                    bucket,
                    source: source.into(),
                })?;
            stores.push(store);
        }
        let leases = stores.pop();
        match (stores.pop(), leases) {
            (Some(cursors), Some(leases)) => Ok((cursors, leases)),
            _ => unreachable!("two buckets were created"),
        }
    }

    /// Creates or updates the `HOOKYARD_DEDUP` bucket and returns its handle.
    pub async fn ensure_dedup(
        &self,
        js: &jetstream::Context,
    ) -> Result<kv::Store, BucketSetupError> {
        let config = self.dedup_config();
        let bucket = config.bucket.clone();
        let failed = |source: async_nats::Error| BucketSetupError {
            bucket: bucket.clone(),
            source,
        };
        let store = js
            .create_or_update_key_value(config)
            .await
            .map_err(|e| failed(e.into()))?;
        // Ingress writes the records of a group of events as one atomic batch; the bucket's
        // settings cannot say so, its stream's can.
        let mut stream = js
            .get_stream(self.dedup_stream())
            .await
            .map_err(|e| failed(e.into()))?;
        let mut settings = stream
            .info()
            .await
            .map_err(|e| failed(e.into()))?
            .config
            .clone();
        if !settings.allow_atomic_publish {
            settings.allow_atomic_publish = true;
            js.update_stream(settings)
                .await
                .map_err(|e| failed(e.into()))?;
        }
        Ok(store)
    }

    /// Creates or updates `HOOKYARD_IN`.
    pub async fn ensure_in(&self, js: &jetstream::Context) -> Result<(), StreamSetupError> {
        ensure(js, self.in_config()).await
    }

    /// Creates or updates `HOOKYARD_WORK` and `HOOKYARD_DLQ`; says how done work items leave
    /// the first. A `HOOKYARD_WORK` an earlier version made as a work queue stays one (JetStream
    /// cannot change a stream's retention to or from work queue in place), with the other
    /// settings updated.
    pub async fn ensure_work_and_dlq(
        &self,
        js: &jetstream::Context,
    ) -> Result<WorkRetention, StreamSetupError> {
        let mut config = self.work_config();
        let retention = match js.get_stream(&config.name).await {
            Ok(stream) if stream.cached_info().config.retention == RetentionPolicy::WorkQueue => {
                config.retention = RetentionPolicy::WorkQueue;
                tracing::warn!(
                    stream = %config.name,
                    "the work stream is a work queue from an earlier version: each acknowledgement costs a synced removal; docs/operations.md says how to recreate it"
                );
                WorkRetention::WorkQueue
            }
            _ => WorkRetention::Purged,
        };
        ensure(js, config).await?;
        ensure(js, self.dlq_config()).await?;
        Ok(retention)
    }

    /// Purges `handler`'s subject of the work stream `work` below its consumer's ack floor,
    /// where every item is done, unless that is below `purged_below` already; returns what it
    /// purges below now (the floor + 1, or `purged_below`).
    pub async fn purge_done_work(
        &self,
        work: &stream::Stream,
        handler: &str,
        purged_below: u64,
    ) -> Result<u64, async_nats::Error> {
        let info = work.consumer_info(self.handler_consumer(handler)).await?;
        let below = info.ack_floor.stream_sequence.saturating_add(1);
        if below <= purged_below.max(1) {
            return Ok(purged_below);
        }
        work.purge()
            .filter(self.work_subject(handler))
            .sequence(below)
            .await?;
        Ok(below)
    }

    /// Creates or updates `HOOKYARD_WAIT`.
    pub async fn ensure_wait(&self, js: &jetstream::Context) -> Result<(), StreamSetupError> {
        ensure(js, self.wait_config()).await
    }
}

/// `text` as one subject token: itself when it is a non-empty run of letters, digits, `-` and
/// `_` (every name the integration file allows, every event id ingress makes), `_` when empty,
/// else `h` and a hash of it, so no input can add tokens or wildcards to a subject.
pub fn subject_token(text: &str) -> String {
    use sha2::{Digest, Sha256};
    if text.is_empty() {
        return "_".to_owned();
    }
    let safe = text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if safe {
        text.to_owned()
    } else {
        format!("h{}", hex::encode(&Sha256::digest(text.as_bytes())[..16]))
    }
}

/// How acknowledged work items leave `HOOKYARD_WORK`.
///
/// A work queue removes each message as it is acknowledged, and on a one-replica file stream
/// under `sync_interval: always` nats-server writes that removal as a tombstone synced on its own:
/// one fsync per delivered event, outside any group commit. So the stream has limits retention
/// and the handler's workers purge what their consumer has acknowledged, up to its ack floor,
/// in one request a few times a second (`hookyard_worker`'s `purge`), which nats-server writes
/// with one flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkRetention {
    /// Limits retention: the workers purge what is done.
    Purged,
    /// A work queue made by an earlier version: JetStream removes each item as it is
    /// acknowledged, and there is nothing to purge.
    WorkQueue,
}

/// A stream could not be created or updated.
#[derive(Debug, thiserror::Error)]
#[error("failed to create or update stream {stream}")]
pub struct StreamSetupError {
    /// Stream name.
    pub stream: String,
    #[source]
    source: jetstream::context::CreateStreamError,
}

/// A KV bucket could not be created or updated.
#[derive(Debug, thiserror::Error)]
#[error("failed to create or update bucket {bucket}")]
pub struct BucketSetupError {
    /// Bucket name.
    pub bucket: String,
    #[source]
    source: async_nats::Error,
}

async fn ensure(js: &jetstream::Context, config: stream::Config) -> Result<(), StreamSetupError> {
    let stream = config.name.clone();
    js.create_or_update_stream(config)
        .await
        .map(|_| ())
        .map_err(|source| StreamSetupError { stream, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_match_design() {
        let t = Topology::default();
        assert_eq!(t.in_stream(), "HOOKYARD_IN");
        assert_eq!(t.work_stream(), "HOOKYARD_WORK");
        assert_eq!(t.dlq_stream(), "HOOKYARD_DLQ");
        assert_eq!(t.in_subject("shop"), "hookyard.in.shop");
        assert_eq!(t.work_subject("orders"), "hookyard.work.orders");
        assert_eq!(t.dlq_subject("orders"), "hookyard.dlq.orders");
        assert_eq!(t.unrouted_subject(), "hookyard.dlq.unrouted");
        assert_eq!(t.dedup_bucket(), "HOOKYARD_DEDUP");
        assert_eq!(t.tokens_bucket(), "HOOKYARD_TOKENS");
        assert_eq!(
            t.token_needs_consent_subject(),
            "hookyard.token.needs_consent"
        );
    }

    #[test]
    fn audit_subjects_carry_ids_and_filters_match_them() {
        let t = Topology::default();
        assert_eq!(
            t.audit_egress_subject("erp", "evt_1"),
            "hookyard.audit.egress.erp.evt_1"
        );
        assert_eq!(
            t.audit_egress_subject("erp", ""),
            "hookyard.audit.egress.erp._"
        );
        assert_eq!(
            t.audit_egress_filter(None, Some("evt_1")),
            "hookyard.audit.egress.*.evt_1"
        );
        assert_eq!(
            t.audit_worker_subject("orders", "retry", "evt_1"),
            "hookyard.audit.worker.orders.retry.evt_1"
        );
        assert_eq!(
            t.audit_worker_filter(Some("orders"), None, None),
            "hookyard.audit.worker.orders.*.*"
        );
        assert!(t.audit_config().subjects[0].ends_with("audit.>"));
    }

    #[test]
    fn hostile_ids_become_one_safe_token() {
        for hostile in ["a.b", "*", ">", "a b", "evt\u{0}", &"x".repeat(500), "ü"] {
            let token = subject_token(hostile);
            assert!(
                token.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{hostile:?} -> {token}"
            );
            assert_eq!(token, subject_token(hostile));
        }
        assert_eq!(subject_token("evt_0a1b"), "evt_0a1b");
        assert_eq!(subject_token(""), "_");
        assert_ne!(subject_token("a.b"), subject_token("a.c"));
    }

    #[test]
    fn in_subjects_give_back_their_source() {
        let t = Topology::new("t1");
        assert_eq!(t.source_of_in_subject(&t.in_subject("shop")), Some("shop"));
        assert_eq!(
            t.source_of_in_subject(&t.in_event_subject("erp", "evt_1")),
            Some("erp")
        );
        assert_eq!(t.source_of_in_subject("t1.hookyard.work.shop"), None);
        assert_eq!(t.in_filter(None), ["t1.hookyard.in.>"]);
        assert_eq!(
            t.in_filter(Some("shop")),
            ["t1.hookyard.in.shop", "t1.hookyard.in.shop.>"]
        );
    }

    #[test]
    fn dedup_bucket_is_namespaced_and_remembers_for_the_window() {
        let t = Topology::new("t1");
        assert_eq!(t.dedup_bucket(), "T1_HOOKYARD_DEDUP");
        let c = t.dedup_config();
        assert_eq!(c.bucket, "T1_HOOKYARD_DEDUP");
        assert_eq!(t.dedup_stream(), "KV_T1_HOOKYARD_DEDUP");
        assert_eq!(c.history, 1);
        assert_eq!(c.storage, StorageType::File);
        assert_eq!(c.max_age, Duration::from_secs(7 * 24 * 3600));
        assert!(c.max_bytes > 0);
        // Longer than the stream's own window, or the bucket would add nothing.
        assert!(t.limits.dedup_window > t.limits.duplicate_window);
    }

    #[test]
    fn polled_events_have_a_subject_each_under_their_source() {
        let t = Topology::new("t1");
        let subject = t.in_event_subject("erp", "evt_0a");
        assert_eq!(subject, "t1.hookyard.in.erp.evt_0a");
        assert_eq!(t.source_of_in_subject(&subject), Some("erp"));
        assert_eq!(t.source_of_in_subject(&t.in_subject("shop")), Some("shop"));
        assert_eq!(t.source_of_in_subject("t1.hookyard.work.x"), None);
        assert_eq!(
            t.in_source_subjects("erp"),
            [
                "t1.hookyard.in.erp".to_owned(),
                "t1.hookyard.in.erp.>".to_owned()
            ]
        );
        assert_eq!(t.poll_cursors_bucket(), "T1_HOOKYARD_POLL_CURSORS");
        assert_eq!(t.poll_leases_bucket(), "T1_HOOKYARD_POLL_LEASES");
        assert!(t.poll_leases_config().limit_markers.is_some());
    }

    #[test]
    fn namespace_prefixes_streams_and_subjects() {
        let t = Topology::new("t1");
        assert_eq!(t.in_stream(), "T1_HOOKYARD_IN");
        assert_eq!(t.work_subject("orders"), "t1.hookyard.work.orders");
        assert_eq!(t.in_config().subjects, vec!["t1.hookyard.in.>".to_owned()]);
    }

    #[test]
    fn every_stream_and_bucket_takes_the_replica_count() {
        let mut t = Topology::new("t1");
        assert_eq!(t.in_config().num_replicas, 1);
        t.limits.replicas = 3;
        let streams = [
            t.in_config(),
            t.work_config(),
            t.wait_config(),
            t.dlq_config(),
            t.audit_config(),
        ];
        for config in &streams {
            assert_eq!(config.num_replicas, 3, "{}", config.name);
        }
        let buckets = [
            t.dedup_config(),
            t.tokens_config(),
            t.poll_cursors_config(),
            t.poll_leases_config(),
            t.returns_config(),
            t.steps_config(),
        ];
        for config in &buckets {
            assert_eq!(config.num_replicas, 3, "{}", config.bucket);
        }
    }

    #[test]
    fn work_queue_caps_each_handler_and_its_overflow_waits_per_handler() {
        let t = Topology::new("t1");
        let work = t.work_config();
        assert_eq!(work.max_messages_per_subject, DEFAULT_WORK_MAX_PER_HANDLER);
        assert!(work.discard_new_per_subject);
        assert_eq!(work.discard, DiscardPolicy::New);
        let wait = t.wait_config();
        assert_eq!(wait.name, "T1_HOOKYARD_WAIT");
        assert_eq!(wait.retention, RetentionPolicy::WorkQueue);
        assert_eq!(wait.discard, DiscardPolicy::New);
        assert_eq!(t.wait_subject("orders"), "t1.hookyard.wait.orders");
        assert_eq!(t.wait_consumer("orders"), "wait-orders");
    }

    #[test]
    fn in_stream_refuses_new_writes_when_full() {
        let c = Topology::default().in_config();
        assert_eq!(c.discard, DiscardPolicy::New);
        assert_eq!(c.storage, StorageType::File);
        assert!(c.max_age >= Duration::from_secs(7 * 24 * 3600));
        assert!(c.max_bytes > 0);
    }
}

#[cfg(test)]
mod reservation {
    use super::*;

    /// The defaults must fit the file store our NATS config grants, or stream setup fails
    /// with "insufficient storage resources".
    #[test]
    fn default_limits_fit_the_configured_file_store() {
        let conf = include_str!("../../../deploy/nats/nats-server.conf");
        let gb: i64 = conf
            .lines()
            .find_map(|l| l.trim().strip_prefix("max_file_store:"))
            .and_then(|v| v.trim().strip_suffix("GB"))
            .and_then(|v| v.trim().parse().ok())
            .expect("max_file_store in GB");
        let l = StreamLimits::default();
        assert!(
            l.in_max_bytes
                + l.work_max_bytes
                + l.dlq_max_bytes
                + l.dedup_max_bytes
                + l.audit_max_bytes
                + l.tokens_max_bytes
                + l.poll_cursors_max_bytes
                + l.poll_leases_max_bytes
                + l.returns_max_bytes
                + l.steps_max_bytes
                + l.wait_max_bytes
                <= gb * 1_000_000_000
        );
    }
}
