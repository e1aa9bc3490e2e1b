//! HTTP/1 framing the RFCs ask a server to refuse: a missing or repeated `Host`, and a
//! `Transfer-Encoding` other than `chunked` alone. Sent as raw bytes, since HTTP clients will
//! not write such requests; each gets 400, the connection is closed, and nothing is stored.

use std::time::Duration;

use anyhow::Context;
use hookyard_testkit::Nats;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::harness::{self, OPEN};

/// Sends `request` and reads the whole answer; the server must close the connection after it.
async fn answer(addr: std::net::SocketAddr, request: &[u8]) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .context("the server kept the connection open")??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// `{"x":1}` gzip-compressed (`printf '{"x":1}' | gzip -n | xxd -i`).
const GZIPPED: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xab, 0x56, 0xaa, 0x50, 0xb2, 0x32,
    0xac, 0x05, 0x00, 0x5c, 0x59, 0xeb, 0x3b, 0x07, 0x00, 0x00, 0x00,
];

fn chunked(head: &str, body: &[u8]) -> Vec<u8> {
    let mut request = head.as_bytes().to_vec();
    request.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    request
}

#[tokio::test]
async fn ambiguous_hosts_and_transfer_codings_get_400_and_nothing_is_stored() -> anyhow::Result<()>
{
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, Duration::from_secs(5)).await?;
    let plain = |head: &str| format!("POST {OPEN} HTTP/1.1\r\n{head}\r\nhi").into_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "two Host headers",
            plain("Host: a.example\r\nHost: b.example\r\nContent-Length: 2\r\n"),
        ),
        (
            "two equal Host headers",
            plain("Host: a.example\r\nHost: a.example\r\nContent-Length: 2\r\n"),
        ),
        ("HTTP/1.1 without Host", plain("Content-Length: 2\r\n")),
        (
            "Host with user info",
            plain("Host: user@a.example\r\nContent-Length: 2\r\n"),
        ),
        (
            "gzip, chunked",
            chunked(
                &format!(
                    "POST {OPEN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                ),
                GZIPPED,
            ),
        ),
        (
            "gzip then chunked in two headers",
            chunked(
                &format!(
                    "POST {OPEN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                ),
                GZIPPED,
            ),
        ),
        (
            "chunked in HTTP/1.0",
            chunked(
                &format!("POST {OPEN} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
                b"hi",
            ),
        ),
    ];
    for (case, request) in &cases {
        let text = answer(ingress.addr, request).await?;
        let status_line = text.lines().next().unwrap_or_default();
        assert!(
            status_line.starts_with("HTTP/1.1 400 "),
            "{case}: {status_line:?}"
        );
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{case}: {text:?}"
        );
        // hyper answers the HTTP/1.0 row itself, without a body.
        if !case.contains("HTTP/1.0") {
            assert!(
                text.contains(r#""error":"bad_framing""#),
                "{case}: {text:?}"
            );
        }
    }
    assert_eq!(ingress.stored().await?, 0);

    // The same body sent with plain chunked framing is accepted and stored as sent.
    let good = answer(
        ingress.addr,
        &chunked(
            &format!(
                "POST {OPEN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            ),
            GZIPPED,
        ),
    )
    .await?;
    assert!(good.starts_with("HTTP/1.1 202 "), "{good:?}");
    let stored = ingress.messages().await?;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.body, GZIPPED);
    ingress.stop().await
}
