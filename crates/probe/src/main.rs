//! `hookyard-probe URL`: exits 0 when an HTTP GET of `URL` answers 200 within 2 s, else 1.
//!
//! Made for container healthchecks in images that have no shell, curl or wget — the NATS image
//! is `FROM scratch` — so it uses only `std`, takes an IP literal (no DNS, so it links
//! statically without NSS), speaks plain HTTP/1.0, and is built with
//! `-C target-feature=+crt-static`. Example:
//! `hookyard-probe http://127.0.0.1:8222/healthz?js-enabled-only=true`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::ExitCode,
    time::Duration,
};

const TIMEOUT: Duration = Duration::from_secs(2);

/// Splits `http://IP:PORT/path?query` into the socket address and the request target.
fn parse(url: &str) -> Result<(SocketAddr, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported: {url}"))?;
    let (authority, target) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let addr = authority
        .parse::<SocketAddr>()
        .map_err(|_| format!("expected IP:PORT, got {authority}"))?;
    if target.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("the path must not contain spaces or control characters".to_owned());
    }
    Ok((addr, target))
}

fn status_code(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

fn probe(url: &str) -> Result<u16, String> {
    let (addr, target) = parse(url)?;
    let mut stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    // One write: a server may answer and close as soon as it has the request line.
    let request = format!("GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut head = Vec::with_capacity(256);
    stream
        .take(4096)
        .read_to_end(&mut head)
        .map_err(|e| format!("read: {e}"))?;
    status_code(&head).ok_or_else(|| "not an HTTP response".to_owned())
}

fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: hookyard-probe http://IP:PORT/path");
        return ExitCode::from(2);
    };
    match probe(&url) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("unhealthy: status {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_urls_only() {
        let (addr, target) =
            parse("http://127.0.0.1:8222/healthz?js-enabled-only=true").expect("ok");
        assert_eq!(addr.port(), 8222);
        assert_eq!(target, "/healthz?js-enabled-only=true");
        assert_eq!(parse("http://127.0.0.1:80").expect("ok").1, "/");
        assert!(parse("https://127.0.0.1:1/").is_err());
        assert!(parse("http://localhost:1/").is_err());
        assert!(parse("http://127.0.0.1:1/a b").is_err());
        assert!(parse("http://127.0.0.1:1/a\r\nX: y").is_err());
    }

    #[test]
    fn reads_the_status_code() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n\r\nok"), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b""), None);
    }

    #[test]
    fn answers_from_a_real_server() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = server.local_addr().expect("addr");
        let handle = std::thread::spawn(move || {
            for reply in [
                "HTTP/1.1 200 OK\r\n\r\n",
                "HTTP/1.1 503 Unavailable\r\n\r\n",
            ] {
                let (mut s, _) = server.accept().expect("accept");
                // Read the whole request head, as an HTTP server does, then answer.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).expect("read") == 1 {
                    head.push(byte[0]);
                }
                assert!(head.starts_with(b"GET /healthz HTTP/1.0\r\n"));
                s.write_all(reply.as_bytes()).expect("write");
            }
        });
        assert_eq!(probe(&format!("http://{addr}/healthz")), Ok(200));
        assert_eq!(probe(&format!("http://{addr}/healthz")), Ok(503));
        handle.join().expect("server thread");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        assert!(probe(&format!("http://127.0.0.1:{port}/")).is_err());
    }
}
