//! The hostile-input table: oversized, slow, malformed and misdirected requests each get a
//! clear refusal, nothing is stored from them, and the server keeps serving everyone else.
//!
//! Rows covered elsewhere: body at the limit and one byte over (`accept`, `refuse`); empty,
//! truncated, overlong, non-base64 and unknown-version signatures, 299/301 s old, non-numeric
//! and overflowing timestamps, duplicate signature headers and re-spaced JSON (`signature`
//! and the unit tests of `verify`); a stalled body (`access`).

use std::{
    net::SocketAddr,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;
use hookyard_core::{
    config::{DedupKey, Secret, SecretRef, Signature},
    expr::Expr,
    streams::Topology,
};
use hookyard_testkit::{Nats, unique_namespace, wait_for};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::harness::{
    self, GITHUB, GITHUB_SECRET, OPEN, PASSWORD, SHOP, SLACK, USER, accepted_id, raw_status,
};

const MIB: usize = 1024 * 1024;

/// Reads the status line of the answer on `stream`; `None` when the server closed the
/// connection without answering.
async fn read_status(stream: &mut tokio::net::tcp::OwnedReadHalf) -> anyhow::Result<Option<u16>> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) if answer.is_empty() => return Ok(None),
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .map(Some)
        .with_context(|| format!("bad status line {line:?}"))
}

/// Sends a request head and then up to `body_bytes` of body (declared or chunked) while
/// reading the answer, as a sender that does not wait for `100 Continue` would.
async fn send_huge(addr: SocketAddr, body_bytes: usize, chunked: bool) -> anyhow::Result<u16> {
    let stream = TcpStream::connect(addr).await?;
    let (mut read, mut write) = stream.into_split();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {body_bytes}")
    };
    let head = format!("POST {OPEN} HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n");
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < body_bytes {
            if chunked {
                write
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
            }
            write.write_all(&chunk).await?;
            if chunked {
                write.write_all(b"\r\n").await?;
            }
            sent += chunk.len();
        }
        if chunked {
            write.write_all(b"0\r\n\r\n").await?;
        }
        anyhow::Ok(sent)
    });
    let status = tokio::time::timeout(Duration::from_secs(60), read_status(&mut read))
        .await
        .context("no answer to a huge body within 60s")??;
    // The server stops reading after answering; the writer ends with an error or finishes.
    writer.abort();
    status.context("connection closed without an answer")
}

/// Peak resident memory of a process, from `/proc/<pid>/status`.
fn peak_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM line")?;
    Ok(kb * 1024)
}

#[tokio::test]
async fn fifty_megabytes_declared_or_chunked_get_413_with_flat_memory_and_nothing_stored()
-> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let namespace = unique_namespace("huge");
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("integration.toml");
    std::fs::write(
        &config,
        format!("[sources.open]\npath = \"{OPEN}\"\nmax_body_bytes = {MIB}\n"),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // The real binary, so its memory is its own and not this test process's.
    let mut ingress = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookyard-ingress"))
        .arg("--config")
        .arg(&config)
        .args(["--nats-url", &nats.url(), "--namespace", &namespace])
        .args(["--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = ingress.id().context("ingress pid")?;
    let http = reqwest::Client::new();
    wait_for(Duration::from_secs(30), "ingress ready", || async {
        matches!(http.get(format!("http://{addr}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await?;
    // One accepted event first, so the baseline includes a whole request's worth of buffers.
    let warm = http
        .post(format!("http://{addr}{OPEN}"))
        .body(vec![b'w'; MIB])
        .send()
        .await?;
    assert_eq!(warm.status().as_u16(), 202);
    let baseline = peak_rss_bytes(pid)?;

    let fifty = 50 * MIB;
    assert_eq!(send_huge(addr, fifty, false).await?, 413, "declared");
    assert_eq!(send_huge(addr, fifty, true).await?, 413, "chunked");
    assert_eq!(send_huge(addr, fifty, true).await?, 413, "chunked again");

    let growth = peak_rss_bytes(pid)?.saturating_sub(baseline);
    println!(
        "peak RSS growth over 3 x 50 MiB refused: {} KiB",
        growth / 1024
    );
    // Reading even one of the bodies would raise the peak by 50 MiB; the limit is 1 MiB.
    assert!(
        growth < 8 * MIB as u64,
        "peak RSS grew by {growth} bytes: a refused body was buffered"
    );
    let js = async_nats::jetstream::new(nats.client().await?);
    let stream = js.get_stream(Topology::new(&namespace).in_stream()).await?;
    assert_eq!(stream.cached_info().state.messages, 1, "only the warm-up");
    // Still serving.
    let after = http
        .post(format!("http://{addr}{OPEN}"))
        .body("after")
        .send()
        .await?;
    assert_eq!(after.status().as_u16(), 202);
    ingress.kill().await?;
    Ok(())
}

#[tokio::test]
async fn a_64_kib_header_gets_431_and_the_server_keeps_serving() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, Duration::from_secs(5)).await?;
    let big = "a".repeat(64 * 1024);
    let request =
        format!("POST {OPEN} HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(raw_status(ingress.addr, request.as_bytes()).await?, 431);
    // Many small headers adding up to the same size are refused the same way.
    let many: String = (0..2048)
        .map(|n| format!("X-H{n}: {}\r\n", "b".repeat(28)))
        .collect();
    let request = format!("POST {OPEN} HTTP/1.1\r\nHost: x\r\n{many}Content-Length: 2\r\n\r\nhi");
    assert_eq!(raw_status(ingress.addr, request.as_bytes()).await?, 431);
    assert_eq!(ingress.stored().await?, 0);
    // A request with ordinary headers right after is served.
    accepted_id(ingress.post_open(b"fine".to_vec()).await?).await?;
    ingress.stop().await
}

#[tokio::test]
async fn a_client_sending_one_byte_per_second_is_cut_off_while_others_are_served()
-> anyhow::Result<()> {
    const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
    let nats = Nats::start().await?;
    let ingress =
        harness::spawn_configured(nats.client().await?, harness::integration(), |settings| {
            settings.server.header_read_timeout = HEADER_TIMEOUT;
        })
        .await?;
    let (mut read, mut write) = TcpStream::connect(ingress.addr).await?.into_split();
    let started = Instant::now();
    // The slow sender: the pause is the behaviour under test, not a synchronisation.
    let trickle = tokio::spawn(async move {
        for byte in format!("POST {OPEN} HTTP/1.1\r\nHost: x\r\n").bytes() {
            if write.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let answer = tokio::spawn(async move { read_status(&mut read).await });

    // Everyone else is served while the trickle is connected.
    for n in 0..5 {
        accepted_id(ingress.post_open(format!("other {n}").into_bytes()).await?).await?;
    }
    assert!(!answer.is_finished(), "the slow client is still connected");

    let status = tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .context("the slow client was never cut off")???;
    let held = started.elapsed();
    trickle.abort();
    println!("slow client cut off after {held:?}");
    assert_eq!(status, None, "closed without an answer");
    assert!(held >= HEADER_TIMEOUT, "not before the header timeout");
    assert_eq!(ingress.stored().await?, 5);

    // A connection that sends nothing is closed too.
    let (mut read, _write) = TcpStream::connect(ingress.addr).await?.into_split();
    let silent = tokio::time::timeout(Duration::from_secs(30), read_status(&mut read))
        .await
        .context("a silent connection was never closed")??;
    assert_eq!(silent, None);

    // So is a kept-alive connection left idle that long after an answer: the answer does not
    // ask to close it, and the close comes later, with nothing more sent.
    let (mut read, mut write) = TcpStream::connect(ingress.addr).await?.into_split();
    write
        .write_all(
            format!("POST {OPEN} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nidle").as_bytes(),
        )
        .await?;
    let mut answer = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut answer))
        .await
        .context("an idle kept-alive connection was never closed")?;
    answered?;
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(
        answer.starts_with("http/1.1 202"),
        "answered first: {answer}"
    );
    assert!(
        !answer.contains("connection: close"),
        "kept alive: {answer}"
    );
    assert_eq!(
        answer.matches("http/1.1 ").count(),
        1,
        "one answer: {answer}"
    );
    assert_eq!(ingress.stored().await?, 6);
    drop(write);
    ingress.stop().await
}

/// The GitHub documentation example (see `signature.rs`), valid for the `github` source.
const BODY: &str = "Hello, World!";
const SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
const OTHER_PATH: &str = "/hooks/github-other";
const OTHER_SECRET: &str = "another-repository-secret";

#[tokio::test]
async fn a_valid_signature_for_one_source_is_refused_by_another() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let mut integration = harness::integration();
    let mut other = integration.sources["github"].clone();
    other.path = Some(OTHER_PATH.to_owned());
    other.signature = Some(Signature::Github {
        secrets: vec![Secret::from_value(
            SecretRef::Env("OTHER_SECRET".into()),
            OTHER_SECRET,
        )],
    });
    integration.sources.insert("github_other".to_owned(), other);
    let ingress = harness::spawn_serving(nats.client().await?, integration).await?;
    let send = |path: &'static str| {
        ingress
            .http
            .post(ingress.url(path))
            .header("X-Hub-Signature-256", SIGNATURE)
            .body(BODY)
            .send()
    };
    let refused = send(OTHER_PATH).await?;
    assert_eq!(refused.status().as_u16(), 401);
    let text = refused.text().await?;
    let answer: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(answer["error"], "signature_mismatch");
    for secret in [GITHUB_SECRET, OTHER_SECRET] {
        assert!(!text.contains(secret), "the error body echoes a secret");
    }
    assert_eq!(ingress.stored().await?, 0);
    accepted_id(send(GITHUB).await?).await?;
    assert_eq!(ingress.stored().await?, 1);
    ingress.stop().await
}

/// The harness's sources plus `by_jq` on `/hooks/by-jq`: open, with a jq dedup key, so its
/// body reaches a JSON reader at ingress.
fn with_jq_source() -> anyhow::Result<hookyard_core::Integration> {
    let mut integration = harness::integration();
    let mut by_jq = integration.sources["open"].clone();
    by_jq.path = Some("/hooks/by-jq".to_owned());
    by_jq.dedup_key = Some(DedupKey::Expr(Expr::Jq(hookyard_core::expr::Jq::compile(
        ".id",
    )?)));
    integration.sources.insert("by_jq".to_owned(), by_jq);
    Ok(integration)
}

#[tokio::test]
async fn a_non_utf8_body_is_stored_byte_for_byte() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let integration = with_jq_source()?;
    let ingress = harness::spawn_serving(nats.client().await?, integration).await?;
    let body: Vec<u8> = vec![0xff, 0xfe, 0x00, b'{', 0xc3, 0x28, b'}', 0x80];
    let plain = accepted_id(ingress.post_open(body.clone()).await?).await?;
    // A jq dedup key cannot read it; the event is still accepted, keyed by its hash.
    let jq = accepted_id(
        ingress
            .http
            .post(ingress.url("/hooks/by-jq"))
            .body(body.clone())
            .send()
            .await?,
    )
    .await?;
    let stored = ingress.messages().await?;
    assert_eq!(stored.len(), 2);
    for (_, envelope) in &stored {
        assert!(envelope.id == plain || envelope.id == jq);
        assert_eq!(envelope.body, body, "stored as received");
        assert!(envelope.dedup_key.starts_with("sha256:"));
    }
    ingress.stop().await
}

/// A body of nothing but nesting, as large as the source accepts, reaches no JSON reader: every
/// source answers 400 `body_too_deep`, nothing is stored, and the process serves on.
#[tokio::test]
async fn a_body_nested_to_the_body_limit_gets_400_at_every_source_and_nothing_stored()
-> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let mut integration = with_jq_source()?;
    for source in integration.sources.values_mut() {
        source.max_body_bytes = MIB as u64;
    }
    let paths: Vec<String> = ["open", "by_jq", "slack", "meta"]
        .iter()
        .map(|name| {
            integration.sources[*name]
                .path
                .clone()
                .expect("webhook source")
        })
        .collect();
    let ingress = harness::spawn_serving(nats.client().await?, integration).await?;
    let levels = MIB / 2 - 16;
    for body in [
        format!("{}{}", "[".repeat(levels), "]".repeat(levels)),
        format!("{}{}", "{\"a\":".repeat(MIB / 10), "}".repeat(MIB / 10)),
    ] {
        for path in &paths {
            let mut request = ingress
                .http
                .post(ingress.url(path))
                .header("content-type", "application/json");
            if path == SLACK {
                // Signed, so the refusal is for the nesting and not the signature.
                for (name, value) in crate::handshake::slack_headers(&body)? {
                    request = request.header(name, value);
                }
            }
            let answer = request.body(body.clone()).send().await?;
            assert_eq!(answer.status(), 400, "{path}");
            let json: serde_json::Value = answer.json().await?;
            assert_eq!(json["error"], "body_too_deep", "{path}");
        }
    }
    assert_eq!(ingress.stored().await?, 0);
    let nested_but_fine = format!("{}1{}", "[".repeat(64), "]".repeat(64));
    accepted_id(ingress.post_open(nested_but_fine.into_bytes()).await?).await?;
    assert_eq!(ingress.stored().await?, 1);
    ingress.stop().await
}

/// Delivery ids that are not UTF-8 are refused, each of them: read lossily, `\xff` and `\xfe`
/// would both become `\u{fffd}`, one event id, and the second delivery would be answered 202
/// and dropped as a duplicate.
#[tokio::test]
async fn delivery_ids_that_are_not_utf8_are_refused_never_merged() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, std::time::Duration::from_secs(5)).await?;
    let send = |id: &[u8], body: &'static str| {
        ingress
            .http
            .post(ingress.url(SHOP))
            .basic_auth(USER, Some(PASSWORD))
            .header(
                "X-Delivery-Id",
                reqwest::header::HeaderValue::from_bytes(id).expect("obs-text is allowed"),
            )
            .body(body)
            .send()
    };
    for (id, body) in [(&b"d-\xff"[..], "one"), (b"d-\xfe", "two")] {
        let answer = send(id, body).await?;
        assert_eq!(answer.status(), 400);
        let json: serde_json::Value = answer.json().await?;
        assert_eq!(json["error"], "bad_delivery_id");
    }
    assert_eq!(ingress.stored().await?, 0);
    let first = accepted_id(send(b"d-1", "one").await?).await?;
    let second = accepted_id(send("d-é".as_bytes(), "two").await?).await?;
    assert_ne!(first, second);
    assert_eq!(ingress.stored().await?, 2);
    ingress.stop().await
}

/// Guards the helper above against reporting a closed connection as an answer.
#[tokio::test]
async fn read_status_tells_a_closed_connection_from_an_answer() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (first, _) = listener.accept().await?;
        drop(first);
        let (mut second, _) = listener.accept().await?;
        second
            .write_all(b"HTTP/1.1 418 I'm a teapot\r\n\r\n")
            .await?;
        anyhow::Ok(())
    });
    let (mut closed, _w1) = TcpStream::connect(addr).await?.into_split();
    assert_eq!(read_status(&mut closed).await?, None);
    let (mut answered, _w2) = TcpStream::connect(addr).await?.into_split();
    assert_eq!(read_status(&mut answered).await?, Some(418));
    server.await??;
    Ok(())
}

#[tokio::test]
async fn a_body_over_the_brokers_max_payload_gets_413_not_503() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let client = nats.client().await?;
    // The client connects in the background; the server's INFO carries the limit.
    wait_for(Duration::from_secs(10), "server info", || async {
        client.server_info().max_payload > 0
    })
    .await?;
    let max_payload = client.server_info().max_payload;
    let mut integration = harness::integration();
    let open = integration.sources.get_mut("open").context("open source")?;
    // A source limit above what the broker takes: the broker's limit decides.
    open.max_body_bytes = u64::try_from(max_payload)? * 2;
    let ingress = harness::spawn_serving(client, integration).await?;
    let refused = ingress.post_open(vec![b'z'; max_payload + 1]).await?;
    assert_eq!(refused.status().as_u16(), 413);
    let answer: serde_json::Value = refused.json().await?;
    assert_eq!(answer["error"], "body_too_large");
    assert_eq!(ingress.stored().await?, 0);
    // Just under the broker's limit (minus the envelope) is stored.
    accepted_id(ingress.post_open(vec![b'z'; max_payload - 4096]).await?).await?;
    assert_eq!(ingress.stored().await?, 1);
    ingress.stop().await
}
