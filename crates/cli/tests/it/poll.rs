//! `hookyard poll NAME --dry-run` on the example against an in-process egress and a loopback
//! partner that pages its records, and `hookyard validate` naming each poll mistake by its key.

use std::{process::Output, sync::Arc};

use hookyard_core::Integration;
use hookyard_testkit::lister::{Lister, Paging};
use tokio_util::sync::CancellationToken;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/erp-orders-poll.toml"
);

/// The example, pointed at the loopback partner (which the SSRF guard refuses by default).
fn example(partner: &str) -> String {
    std::fs::read_to_string(EXAMPLE).expect("example").replace(
        "base_url = \"https://erp.example.com\"",
        &format!("base_url = \"{partner}\"\nallow_private = [\"127.0.0.0/8\"]"),
    )
}

async fn hookyard(text: &str, args: &[&str]) -> (Output, String) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), text).expect("write");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(args)
        .arg("--config")
        .arg(file.path())
        .env_clear()
        .output()
        .await
        .expect("runs hookyard");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output, text)
}

#[tokio::test]
async fn dry_run_prints_records_ids_types_and_the_cursor_and_stores_nothing() {
    let partner = Lister::start(Paging::Cursor).await;
    partner.put("o-1", 1, "created");
    partner.put("o-2", 2, "created");
    partner.put("o-3", 3, "shipped");
    let text = example(&partner.uri());
    let integration = Integration::parse(&text, &|_| None).expect("valid");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let egress = format!("http://{}", listener.local_addr().expect("address"));
    let shutdown = CancellationToken::new();
    let settings = hookyard_egress::Settings {
        integration: Arc::new(integration),
        token_endpoint: None,
        reload: None,
        audit: None,
    };
    tokio::spawn(hookyard_egress::run(settings, listener, shutdown.clone()));
    let _stop = shutdown.drop_guard();

    let args = ["poll", "erp-orders", "--dry-run", "--egress", &egress];
    let (output, out) = hookyard(&text, &args).await;
    println!("{out}");
    assert!(output.status.success(), "{out}");
    for line in [
        "poll erp-orders (dry run) from cursor 0",
        "page 1: GET /v1/orders?since=0 -> 2 record(s)",
        "page 2: GET /v1/orders?since=0&offset=2 -> 1 record(s)",
        "record id=o-1 version=1 type=order.created event=evt_",
        "record id=o-3 version=3 type=order.shipped event=evt_",
        "-> orders",
        "2 page(s), 3 record(s)",
        "cursor it would store: 3",
        "nothing stored (dry run)",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    // Another cursor: what the next poll after it reads.
    let (_, out) = hookyard(&text, &[&args[..], &["--cursor", "3"]].concat()).await;
    assert!(out.contains("-> 1 record(s)"), "{out}");
    assert!(
        out.contains("cursor it would store: 3 (unchanged)"),
        "{out}"
    );
    assert_eq!(partner.sunk().await.len(), 0, "nothing delivered");

    // A partner error fails the dry run with the partner's status.
    partner.fail(Some(503));
    let (output, out) = hookyard(&text, &args).await;
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("HTTP 503"), "{out}");
}

#[tokio::test]
async fn dry_run_needs_a_polling_source_and_the_flag() {
    let text = example("https://erp.example.com");
    let (output, out) = hookyard(&text, &["poll", "orders", "--dry-run"]).await;
    assert_eq!(output.status.code(), Some(64), "{out}");
    assert!(out.contains("no polling source named \"orders\""), "{out}");
    let (output, out) = hookyard(&text, &["poll", "erp-orders"]).await;
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(out.contains("--dry-run"), "{out}");
}

#[tokio::test]
async fn validate_names_the_key_of_each_poll_mistake() {
    let (ok, out) = crate::validate(EXAMPLE.as_ref(), false);
    assert!(ok, "{out}");
    let valid = example("https://erp.example.com");
    for (edit, key) in [
        (
            ("records = \".data\"", "records = \".data[\""),
            "sources.erp-orders.poll.records",
        ),
        (
            ("connection = \"erp\"\npath", "connection = \"crm\"\npath"),
            "sources.erp-orders.poll.connection",
        ),
        (
            ("record_id = \".id\"\n", ""),
            "sources.erp-orders.poll.record_id",
        ),
        (
            ("every = \"30s\"", "schedule = \"every 30 seconds\""),
            "sources.erp-orders.poll.schedule",
        ),
    ] {
        let text = valid.replacen(edit.0, edit.1, 1);
        assert_ne!(text, valid, "{edit:?}");
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), &text).expect("write");
        let (ok, out) = crate::validate(file.path(), false);
        assert!(!ok, "{key}: {out}");
        assert!(out.contains(key), "{key} not in: {out}");
        // A key that is missing has no line of its own.
        assert!(out.contains("line ") || edit.1.is_empty(), "{out}");
    }
}
