//! The admin commands: their arguments and what each asks the API.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookyard_proto::admin::v1::{
    DeadLetterSelector, EventFilter, EventIds, GetDeadLetterRequest, GetEventRequest,
    IdempotencyKey, ListAuditRequest, ListDeadLettersRequest, ListEventsRequest,
    ListHandlersRequest, PauseHandlerRequest, PurgeDeadLettersRequest, ReplayRecord, ReplayRequest,
    ResumeHandlerRequest, TailRequest, replay_request::What,
};
use tokio_stream::StreamExt as _;

use super::{Client, Connect, EXIT_PARTIAL, Failure, show};

/// Commands on the admin API.
#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Events kept in HOOKYARD_IN: list them, or show one with what each handler did.
    Events(Events),
    /// Print events as they are accepted, until interrupted.
    Tail(Tail),
    /// Dead letters: list, show, send back to their handler, purge.
    Dlq(Dlq),
    /// Send events again (by id or by range) as new work items.
    Replay(Replay),
    /// Handlers with their lag, pending work, dead letters and pause state; pause or resume one.
    Handlers(Handlers),
    /// Egress's records of outbound calls (egress with auditing on).
    Audit(Audit),
}

impl Command {
    pub(crate) fn connect(&self) -> &Connect {
        match self {
            Self::Events(c) => &c.connect,
            Self::Tail(c) => &c.connect,
            Self::Dlq(c) => &c.connect,
            Self::Replay(c) => &c.connect,
            Self::Handlers(c) => &c.connect,
            Self::Audit(c) => &c.connect,
        }
    }
}

fn ago(d: Duration) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.saturating_sub(d).as_millis()).unwrap_or(0)
}

fn since_ms(d: Option<Duration>) -> i64 {
    d.map_or(0, ago)
}

#[derive(clap::Args)]
pub(crate) struct Events {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(clap::Subcommand)]
enum EventsCommand {
    /// List events, oldest first.
    Ls(Range),
    /// Show one event: headers (credentials redacted), body, and every handler's attempts.
    Show {
        /// Event id (`evt_…`).
        id: String,
    },
}

/// Which events.
#[derive(clap::Args)]
struct Range {
    /// Only events received within this long ago (e.g. `1h`, `30m`, `2d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Only events received before this long ago.
    #[arg(long, value_parser = humantime::parse_duration)]
    until: Option<Duration>,
    /// Only events of this source.
    #[arg(long)]
    source: Option<String>,
    /// Only events of this type; `*` matches any run of characters (`order.*`).
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Print at most this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

impl Range {
    fn filter(&self) -> EventFilter {
        EventFilter {
            source: self.source.clone().unwrap_or_default(),
            r#type: self.event_type.clone().unwrap_or_default(),
            since_ms: since_ms(self.since),
            until_ms: since_ms(self.until),
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct Tail {
    #[command(flatten)]
    connect: Connect,
    /// Only events of this source.
    #[arg(long)]
    source: Option<String>,
    /// Only events of this type (`order.*`).
    #[arg(long = "type")]
    event_type: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct Dlq {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(clap::Subcommand)]
enum DlqCommand {
    /// List dead letters, oldest first.
    Ls {
        /// A handler's dead letters, or `unrouted`.
        #[arg(long)]
        handler: Option<String>,
        /// Only this reason (`retries_exhausted`, `permanent_failure`, `unrouted`, `bad_event`).
        #[arg(long)]
        reason: Option<String>,
        /// Print at most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one dead letter and its event.
    Show {
        /// The dead letter's sequence (first column of `dlq ls`).
        sequence: u64,
    },
    /// Send dead letters back to their handler; each is deleted once its work item is stored.
    Replay {
        #[command(flatten)]
        pick: Pick,
        /// Count what would be sent and send nothing.
        #[arg(long)]
        dry_run: bool,
        /// The idempotency key the partner sees: the original one, or a new one per replay.
        #[arg(long, value_enum, default_value = "original")]
        idempotency_key: KeyPolicy,
    },
    /// Delete dead letters.
    Purge {
        #[command(flatten)]
        pick: Pick,
        /// Count what would be deleted and delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which dead letters: by sequence, or by handler/reason, or all.
#[derive(clap::Args)]
struct Pick {
    /// Sequences (first column of `dlq ls`).
    sequences: Vec<u64>,
    /// All dead letters of this handler (or `unrouted`).
    #[arg(long)]
    handler: Option<String>,
    /// Only this reason.
    #[arg(long)]
    reason: Option<String>,
    /// Every dead letter.
    #[arg(long)]
    all: bool,
}

impl Pick {
    fn selector(&self) -> DeadLetterSelector {
        DeadLetterSelector {
            sequences: self.sequences.clone(),
            handler: self.handler.clone().unwrap_or_default(),
            reason: self.reason.clone().unwrap_or_default(),
            all: self.all,
            ..Default::default()
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum KeyPolicy {
    /// The original key: a partner that deduplicates treats the call as a retry.
    Original,
    /// A new key per replay: the partner processes the call again.
    New,
}

impl From<KeyPolicy> for IdempotencyKey {
    fn from(policy: KeyPolicy) -> Self {
        match policy {
            KeyPolicy::Original => Self::Original,
            KeyPolicy::New => Self::New,
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct Replay {
    #[command(flatten)]
    connect: Connect,
    /// Event ids; without them, the events in the range given by the options.
    ids: Vec<String>,
    #[command(flatten)]
    range: Range,
    /// Send to this handler only (default: the handlers each event routes to today).
    #[arg(long)]
    handler: Option<String>,
    /// Count what would be sent and send nothing.
    #[arg(long)]
    dry_run: bool,
    /// The idempotency key the partner sees: the original one, or a new one per replay.
    #[arg(long, value_enum, default_value = "original")]
    idempotency_key: KeyPolicy,
}

#[derive(clap::Args)]
pub(crate) struct Handlers {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: Option<HandlersCommand>,
}

#[derive(clap::Subcommand)]
enum HandlersCommand {
    /// Stop delivering a handler's work: it waits in the work stream, nothing is dropped.
    Pause {
        name: String,
        /// Resume by itself after this long (default: until `resume`).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
    },
    /// Deliver a paused handler's work again.
    Resume { name: String },
}

#[derive(clap::Args)]
pub(crate) struct Audit {
    #[command(flatten)]
    connect: Connect,
    /// Only calls made for this event.
    #[arg(long)]
    event: Option<String>,
    /// Only calls on this connection.
    #[arg(long)]
    connection: Option<String>,
    /// Only calls within this long ago.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Print at most this many.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

/// Runs `command`; the exit code on success.
pub(crate) async fn run(
    command: Command,
    mut client: Client,
    connect: &Connect,
) -> Result<u8, Failure> {
    let json = connect.json;
    match command {
        Command::Events(Events { command, .. }) => match command {
            EventsCommand::Ls(range) => list_events(&mut client, &range, json).await,
            EventsCommand::Show { id } => {
                let event = client.get_event(GetEventRequest { id }).await?.into_inner();
                show::event(&event, json);
                Ok(0)
            }
        },
        Command::Tail(tail) => follow(&mut client, tail, json).await,
        Command::Dlq(Dlq { command, .. }) => dlq(&mut client, command, json).await,
        Command::Replay(replay) => {
            let what = if replay.ids.is_empty() {
                What::Filter(replay.range.filter())
            } else {
                What::Events(EventIds { ids: replay.ids })
            };
            let request = ReplayRequest {
                what: Some(what),
                handler: replay.handler.unwrap_or_default(),
                dry_run: replay.dry_run,
                idempotency_key: IdempotencyKey::from(replay.idempotency_key).into(),
            };
            replay_with_progress(&mut client, request, json).await
        }
        Command::Handlers(Handlers { command, .. }) => handlers(&mut client, command, json).await,
        Command::Audit(audit) => list_audit(&mut client, audit, json).await,
    }
}

async fn list_events(client: &mut Client, range: &Range, json: bool) -> Result<u8, Failure> {
    let (mut out, mut token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_events(ListEventsRequest {
                filter: Some(range.filter()),
                page_size: u32::try_from(range.limit.min(1000)).unwrap_or(1000),
                page_token: token,
            })
            .await?
            .into_inner();
        out.extend(page.events);
        token = page.next_page_token;
        if token.is_empty() || out.len() >= range.limit {
            break;
        }
    }
    out.truncate(range.limit);
    show::events(&out, json);
    Ok(0)
}

async fn follow(client: &mut Client, tail: Tail, json: bool) -> Result<u8, Failure> {
    let mut stream = client
        .tail(TailRequest {
            source: tail.source.unwrap_or_default(),
            r#type: tail.event_type.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if !json {
        show::tail_header();
    }
    while let Some(next) = stream.next().await {
        if let Some(event) = next?.event {
            show::tail_line(&event, json);
        }
    }
    Ok(0)
}

async fn dlq(client: &mut Client, command: DlqCommand, json: bool) -> Result<u8, Failure> {
    match command {
        DlqCommand::Ls {
            handler,
            reason,
            limit,
        } => {
            let (mut out, mut token) = (Vec::new(), String::new());
            loop {
                let page = client
                    .list_dead_letters(ListDeadLettersRequest {
                        handler: handler.clone().unwrap_or_default(),
                        reason: reason.clone().unwrap_or_default(),
                        page_size: u32::try_from(limit.min(1000)).unwrap_or(1000),
                        page_token: token,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                out.extend(page.dead_letters);
                token = page.next_page_token;
                if token.is_empty() || out.len() >= limit {
                    break;
                }
            }
            out.truncate(limit);
            show::dead_letters(&out, json);
            Ok(0)
        }
        DlqCommand::Show { sequence } => {
            let dead = client
                .get_dead_letter(GetDeadLetterRequest { sequence })
                .await?
                .into_inner();
            show::dead_letter(&dead, json);
            Ok(0)
        }
        DlqCommand::Replay {
            pick,
            dry_run,
            idempotency_key,
        } => {
            let request = ReplayRequest {
                what: Some(What::DeadLetters(pick.selector())),
                handler: String::new(),
                dry_run,
                idempotency_key: IdempotencyKey::from(idempotency_key).into(),
            };
            replay_with_progress(client, request, json).await
        }
        DlqCommand::Purge { pick, dry_run } => {
            let purged = client
                .purge_dead_letters(PurgeDeadLettersRequest {
                    selector: Some(pick.selector()),
                    dry_run,
                })
                .await?
                .into_inner();
            show::purged(&purged, dry_run, json);
            Ok(0)
        }
    }
}

async fn replay_with_progress(
    client: &mut Client,
    request: ReplayRequest,
    json: bool,
) -> Result<u8, Failure> {
    let mut progress = client.replay(request).await?.into_inner();
    let bar = show::replay_bar();
    let mut record: Option<ReplayRecord> = None;
    while let Some(next) = progress.next().await {
        let p = next?;
        show::replay_progress(&bar, &p);
        if p.done {
            record = p.record;
        }
    }
    bar.finish_and_clear();
    let record = record.ok_or_else(|| Failure::new(1, "the replay ended without its record"))?;
    show::replay_record(&record, json);
    Ok(if record.failed > 0 || !record.error.is_empty() {
        EXIT_PARTIAL
    } else {
        0
    })
}

async fn handlers(
    client: &mut Client,
    command: Option<HandlersCommand>,
    json: bool,
) -> Result<u8, Failure> {
    let handlers = match command {
        None => {
            client
                .list_handlers(ListHandlersRequest {})
                .await?
                .into_inner()
                .handlers
        }
        Some(HandlersCommand::Pause { name, duration }) => {
            let for_ms = duration.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let paused = client
                .pause_handler(PauseHandlerRequest { name, for_ms })
                .await?
                .into_inner();
            paused.handler.into_iter().collect()
        }
        Some(HandlersCommand::Resume { name }) => client
            .resume_handler(ResumeHandlerRequest { name })
            .await?
            .into_inner()
            .handler
            .into_iter()
            .collect(),
    };
    show::handlers(&handlers, json);
    Ok(0)
}

async fn list_audit(client: &mut Client, audit: Audit, json: bool) -> Result<u8, Failure> {
    let (mut out, mut token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_audit(ListAuditRequest {
                event_id: audit.event.clone().unwrap_or_default(),
                connection: audit.connection.clone().unwrap_or_default(),
                since_ms: since_ms(audit.since),
                page_size: u32::try_from(audit.limit.min(1000)).unwrap_or(1000),
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        out.extend(page.records);
        token = page.next_page_token;
        if token.is_empty() || out.len() >= audit.limit {
            break;
        }
    }
    out.truncate(audit.limit);
    show::audit(&out, json);
    Ok(0)
}
