//! `hookyard poll NAME --dry-run`: one poll of a polling source through a running egress
//! (`--egress`), printing every page's records with their ids, versions, event ids and types,
//! and the cursor the poll would store. Nothing is stored: no event, no cursor, no lease.
//!
//! The poll starts from the source's `initial_cursor`, or from `--cursor` (JSON, e.g.
//! `'"2024-05-01T00:00:00Z"'`) to see what the next poll after a given cursor reads. Event types
//! are computed as the router computes them, from the source's `event_type` on each record, and
//! the handlers their routes lead to are listed.
//!
//! Exit code: 0 when the poll succeeded; 1 when it failed (the partner's error, an unreadable
//! answer, egress unreachable); 64 when the integration file is invalid or has no such polling
//! source.

use std::{path::PathBuf, process::ExitCode, time::SystemTime};

use hookyard_core::{Integration, config::SecretScope};
use hookyard_ingress::poll::{Poller, answer::Record, cycle::Walk};
use hookyard_proto::egress::v1::egress_service_client::EgressServiceClient;

/// `hookyard poll …`.
#[derive(clap::Args)]
pub struct Poll {
    /// Polling source (a key under [sources] with a `poll` table).
    name: String,
    /// Store nothing: print what one poll reads and the cursor it would store.
    #[arg(long, required = true)]
    dry_run: bool,
    /// `$cursor` to start from, as JSON (default: the source's `initial_cursor`).
    #[arg(long)]
    cursor: Option<String>,
    /// The integration file.
    #[arg(
        long,
        env = "HOOKYARD_CONFIG",
        default_value = "/etc/hookyard/integration.toml"
    )]
    config: PathBuf,
    /// gRPC endpoint of the running egress.
    #[arg(
        long,
        env = "HOOKYARD_EGRESS_ENDPOINT",
        default_value = "http://127.0.0.1:50052"
    )]
    egress: String,
}

pub fn run(args: Poll) -> ExitCode {
    let config_error = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(hookyard_core::settings::EXIT_CONFIG)
    };
    let integration = match Integration::load_scoped(&args.config, SecretScope::None) {
        Ok(integration) => integration,
        Err(error) => return config_error(format!("{:#}", anyhow::Error::new(error))),
    };
    let Some(poller) = Poller::new(&integration, &args.name) else {
        return config_error(format!(
            "{} has no polling source named {:?}",
            args.config.display(),
            args.name
        ));
    };
    let cursor = match &args.cursor {
        None => poller.poll.initial_cursor.clone(),
        Some(text) => match serde_json::from_str(text) {
            Ok(cursor) => cursor,
            Err(e) => return config_error(format!("--cursor is not JSON: {e}")),
        },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dry_run(&integration, &poller, &args.egress, cursor)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dry_run(
    integration: &Integration,
    poller: &Poller,
    egress: &str,
    cursor: serde_json::Value,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let client = EgressServiceClient::connect(egress.to_owned())
        .await
        .with_context(|| format!("cannot reach egress at {egress}"))?
        .max_decoding_message_size(hookyard_core::grpc::MAX_MESSAGE_BYTES);
    println!("poll {} (dry run) from cursor {cursor}", poller.source);
    let mut walk = Walk::new(poller, cursor.clone(), SystemTime::now());
    while let Some(page) = walk
        .next_page(&client)
        .await
        .with_context(|| format!("poll {} failed", poller.source))?
    {
        println!(
            "page {}: {} -> {} record(s)",
            page.number,
            page.request,
            page.records.len()
        );
        for record in &page.records {
            print_record(integration, record);
        }
    }
    let outcome = walk.finish().context("the cursor filter failed")?;
    println!(
        "{} page(s), {} record(s){}",
        outcome.pages,
        outcome.records,
        if outcome.page_limit {
            " (max_pages reached: the next poll goes on from the cursor)"
        } else {
            ""
        }
    );
    if outcome.cursor == cursor {
        println!("cursor it would store: {} (unchanged)", outcome.cursor);
    } else {
        println!("cursor it would store: {}", outcome.cursor);
    }
    println!("nothing stored (dry run)");
    Ok(())
}

fn print_record(integration: &Integration, record: &Record) {
    let event = &record.event;
    let id = record.id.as_deref().unwrap_or("(none: hashed)");
    let version = record
        .version
        .as_deref()
        .map(|v| format!(" version={v}"))
        .unwrap_or_default();
    let (kind, handlers) = match hookyard_router::route::event_type(integration, event) {
        Ok(kind) => {
            let handlers = integration.handlers_for(&event.source, &kind).join(", ");
            (kind, handlers)
        }
        Err(why) => (format!("? ({why})"), String::new()),
    };
    let handlers = if handlers.is_empty() {
        "no handler".to_owned()
    } else {
        handlers
    };
    println!(
        "  record id={id}{version} type={kind} event={} -> {handlers}",
        event.id
    );
    println!("    {}", record.value);
}
