//! Sender data cannot steer outbound requests: values interpolated into a step's `path` reach
//! the partner as one encoded segment (or query component), and what cannot be made safe is
//! dead-lettered as a permanent failure. The partner is a raw TCP listener that records each
//! request-target exactly as it arrived on the wire.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::harness::*;

const PATHS: &str = r#"
[[routes]]
event = "*"
handlers = ["paths"]

[handlers.paths]
max_deliver = 2
backoff = ["100ms"]

[[handlers.paths.steps]]
type = "http"
connection = "erp"
method = "PUT"
path = { jq = '"/orders/\(.v)"' }

[[handlers.paths.steps]]
type = "http"
connection = "erp"
method = "POST"
path = { jq = '"/search?q=\(.v)&kind=order"' }
"#;

/// One request as the partner saw it: the request-target and the `Idempotency-Key`.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    key: String,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn all(&self) -> Vec<Seen> {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A partner on loopback that answers every request 200 and records its request line.
async fn raw_partner() -> anyhow::Result<(String, Log)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let log = Log::default();
    let recorder = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = recorder.clone();
            tokio::spawn(async move {
                if let Ok(seen) = serve_one(stream).await
                    && let Ok(mut all) = log.0.lock()
                {
                    all.push(seen);
                }
            });
        }
    });
    Ok((format!("http://{addr}"), log))
}

async fn serve_one(mut stream: TcpStream) -> anyhow::Result<Seen> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        anyhow::ensure!(head.len() < 64 * 1024, "request head too large");
        anyhow::ensure!(stream.read(&mut byte).await? == 1, "closed mid-head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().context("no request line")?;
    let target = request_line
        .split(' ')
        .nth(1)
        .context("no request-target")?
        .to_owned();
    let mut key = String::new();
    let mut length = 0usize;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "idempotency-key" => key = value.trim().to_owned(),
                "content-length" => length = value.trim().parse()?,
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await?;
    Ok(Seen { target, key })
}

fn decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[tokio::test]
async fn values_in_a_path_cannot_leave_the_base_path_or_add_a_query() -> anyhow::Result<()> {
    let auth = auth_server("tok", 3600).await;
    let (partner, log) = raw_partner().await?;
    let base = format!("{partner}/base");
    let stack = Stack::start(&shop_config(&base, &auth.uri(), PATHS)).await?;

    // Values that arrive encoded, as one segment and as one query value.
    let delivered = [
        "o-1",
        "%2e%2e",
        "%2E.",
        ".%2e",
        "a%2F..%2Fx",
        "a?admin=1",
        "a#frag",
        "a&kind=admin",
        "http://evil/",
        "//evil",
        "a b+c",
    ];
    // Values that are refused: dot segments (also behind a `/`) and control characters.
    let refused = [
        "..",
        ".",
        "../../admin",
        "a/../../x",
        "a\r\nHost: evil",
        "a\0",
        "a\nb",
    ];
    let mut ids = Vec::new();
    for (n, value) in delivered.iter().chain(&refused).enumerate() {
        let id = stack
            .accepted("order.created", &format!("d-{n}"), &json!({ "v": value }))
            .await?;
        ids.push((id, *value));
    }

    hookyard_testkit::wait_for(
        PATIENCE,
        "every event delivered or dead-lettered",
        || async {
            let letters = stack.dead_letters("paths").await.map_or(0, |l| l.len());
            letters + log.all().len() / 2 >= ids.len()
        },
    )
    .await?;
    hookyard_testkit::wait_for(PATIENCE, "paths handler idle", || {
        stack.handler_idle("paths")
    })
    .await?;

    let seen = log.all();
    for s in &seen {
        assert!(
            s.target.starts_with("/base/"),
            "left the base path: {:?}",
            s.target
        );
    }
    for (id, value) in &ids[..delivered.len()] {
        let first = seen
            .iter()
            .find(|s| s.key == format!("{id}:paths"))
            .with_context(|| format!("no path request for {value:?}"))?;
        let segment = first
            .target
            .strip_prefix("/base/orders/")
            .with_context(|| format!("{value:?} moved the path: {:?}", first.target))?;
        assert!(
            !segment.contains(['/', '?', '#']),
            "{value:?} reached the partner as {:?}",
            first.target
        );
        assert_eq!(decoded(segment), *value, "{:?}", first.target);

        let second = seen
            .iter()
            .find(|s| s.key == format!("{id}:paths:1"))
            .with_context(|| format!("no query request for {value:?}"))?;
        let query = second
            .target
            .strip_prefix("/base/search?")
            .with_context(|| format!("{value:?} moved the path: {:?}", second.target))?;
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("q".to_owned(), (*value).to_owned()),
                ("kind".to_owned(), "order".to_owned())
            ],
            "{:?}",
            second.target
        );
    }
    assert_eq!(seen.len(), 2 * delivered.len(), "{seen:?}");

    let letters = stack.dead_letters("paths").await?;
    assert_eq!(letters.len(), refused.len());
    for letter in &letters {
        let id = letter
            .event
            .as_ref()
            .map(|e| e.id.clone())
            .unwrap_or_default();
        let value = ids
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| *v)
            .context("a dead letter for an unknown event")?;
        assert!(refused.contains(&value), "{value:?} was dead-lettered");
        assert_eq!(letter.reason, "permanent_failure", "{value:?}");
        assert_eq!(letter.attempts, 1, "{value:?}");
        assert!(
            letter.error.contains("segment") || letter.error.contains("control character"),
            "{value:?}: {}",
            letter.error
        );
    }
    stack.stop().await;
    Ok(())
}
