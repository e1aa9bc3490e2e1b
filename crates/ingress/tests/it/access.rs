//! Inbound auth kinds and request limits: `basic` with rotated passwords, `query_basic`,
//! `api_key`, `allow_ips` with `trusted_proxies`, `rate_limit`, `content_types` and
//! `read_timeout`, each against a real ingress and NATS.

use std::{collections::BTreeMap, time::Duration};

use base64::Engine;
use hookyard_core::{
    Integration,
    config::{RateLimit, Secret, SecretRef, Source, SourceAuth},
};
use hookyard_proto::event::v1::Envelope;
use hookyard_testkit::Nats;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{self, Ingress, accepted_id};

fn secret(value: &str) -> Secret {
    Secret::from_value(SecretRef::Env("TEST_SECRET".into()), value)
}

fn source(path: &str) -> Source {
    serde_json::from_value(serde_json::json!({ "path": path })).expect("minimal source")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Every source of these tests, by name; the path is `/in/NAME`.
fn integration() -> Integration {
    let mut sources = BTreeMap::new();
    let mut add = |name: &str, edit: &dyn Fn(&mut Source)| {
        let mut s = source(&format!("/in/{name}"));
        edit(&mut s);
        sources.insert(name.to_owned(), s);
    };
    add("basic", &|s| {
        s.auth = SourceAuth::Basic {
            username: "shop".into(),
            password: None,
            passwords: vec![secret("old"), secret("new")],
        };
    });
    add("query-basic", &|s| {
        s.auth = SourceAuth::QueryBasic {
            param: "boomi_auth".into(),
            username: "boomi".into(),
            password: Some(secret("p+w:1")),
            passwords: Vec::new(),
        };
    });
    add("key-header", &|s| {
        s.auth = SourceAuth::ApiKey {
            header: Some("X-Api-Key".into()),
            query: None,
            keys: vec![secret("k1"), secret("k2")],
        };
    });
    add("key-query", &|s| {
        s.auth = SourceAuth::ApiKey {
            header: None,
            query: Some("api_key".into()),
            keys: vec![secret("k1")],
        };
    });
    add("local", &|s| s.allow_ips = strings(&["127.0.0.0/8"]));
    add("private", &|s| s.allow_ips = strings(&["10.0.0.0/8"]));
    add("proxied", &|s| {
        s.allow_ips = strings(&["203.0.113.0/24"]);
        s.trusted_proxies = strings(&["127.0.0.0/8"]);
    });
    add("untrusted", &|s| {
        s.allow_ips = strings(&["203.0.113.0/24"]);
        s.trusted_proxies = strings(&["10.0.0.0/8"]);
    });
    add("rated", &|s| {
        s.rate_limit = Some(RateLimit {
            per_second: 1,
            burst: Some(3),
        });
    });
    add("json", &|s| {
        s.content_types = strings(&["application/json"])
    });
    add("slow", &|s| s.read_timeout = Duration::from_secs(1));
    Integration {
        sources,
        ..Default::default()
    }
}

async fn spawn(nats: &Nats) -> anyhow::Result<Ingress> {
    harness::spawn_serving(nats.client().await?, integration()).await
}

fn post(ingress: &Ingress, path_and_query: &str) -> reqwest::RequestBuilder {
    ingress
        .http
        .post(ingress.url(path_and_query))
        .header(CONTENT_TYPE, "application/json")
        .body("{}")
}

async fn status(builder: reqwest::RequestBuilder) -> anyhow::Result<u16> {
    Ok(builder.send().await?.status().as_u16())
}

/// The stored envelope with event id `id`.
async fn stored(ingress: &Ingress, id: &str) -> anyhow::Result<Envelope> {
    ingress
        .messages()
        .await?
        .into_iter()
        .map(|(_, e)| e)
        .find(|e| e.id == id)
        .ok_or_else(|| anyhow::anyhow!("event {id} not stored"))
}

fn has_header(envelope: &Envelope, name: &str) -> bool {
    envelope.headers.iter().any(|h| h.name == name)
}

#[tokio::test]
async fn rotated_basic_passwords_are_both_accepted_and_others_get_401() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = spawn(&nats).await?;
    for password in ["old", "new"] {
        let response = post(&ingress, "/in/basic")
            .basic_auth("shop", Some(password))
            .body(password)
            .send()
            .await?;
        let envelope = stored(&ingress, &accepted_id(response).await?).await?;
        assert!(!has_header(&envelope, "authorization"));
    }
    let wrong = post(&ingress, "/in/basic")
        .basic_auth("shop", Some("older"))
        .send()
        .await?;
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().contains_key(WWW_AUTHENTICATE));
    assert_eq!(ingress.stored().await?, 2);
    ingress.stop().await
}

#[tokio::test]
async fn query_basic_credentials_are_checked_and_never_stored() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = spawn(&nats).await?;
    let token = |pair: &str| base64::engine::general_purpose::STANDARD.encode(pair);
    // "+" and "=" of the base64 percent-encoded, as a careful sender does.
    let encoded = token("boomi:p+w:1").replace('+', "%2B").replace('=', "%3D");
    let response = post(
        &ingress,
        &format!("/in/query-basic?a=1&boomi_auth={encoded}&b=2"),
    )
    .send()
    .await?;
    let envelope = stored(&ingress, &accepted_id(response).await?).await?;
    assert_eq!(envelope.query, "a=1&b=2");

    let wrong = post(
        &ingress,
        &format!("/in/query-basic?boomi_auth={}", token("boomi:p+w:2")),
    )
    .send()
    .await?;
    assert_eq!(wrong.status().as_u16(), 401);
    // Only `Authorization: Basic` is challenged.
    assert!(!wrong.headers().contains_key(WWW_AUTHENTICATE));
    for bad in [
        "/in/query-basic?boomi_auth=!!!notbase64",
        "/in/query-basic?boomi_auth=%ff",
        "/in/query-basic?boomi_auth=",
        "/in/query-basic",
    ] {
        assert_eq!(status(post(&ingress, bad)).await?, 401, "{bad}");
    }
    let in_header = post(&ingress, "/in/query-basic").basic_auth("boomi", Some("p+w:1"));
    assert_eq!(status(in_header).await?, 401);
    assert_eq!(ingress.stored().await?, 1);
    ingress.stop().await
}

#[tokio::test]
async fn api_keys_in_a_header_or_query_are_checked_and_never_stored() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = spawn(&nats).await?;
    let mut ids = Vec::new();
    for key in ["k1", "k2"] {
        let response = post(&ingress, "/in/key-header?x=1")
            .header("X-Api-Key", key)
            .body(key)
            .send()
            .await?;
        ids.push(accepted_id(response).await?);
    }
    let response = post(&ingress, "/in/key-query?api_key=k1&x=1")
        .send()
        .await?;
    let by_query = stored(&ingress, &accepted_id(response).await?).await?;
    assert_eq!(by_query.query, "x=1");
    for id in ids {
        let envelope = stored(&ingress, &id).await?;
        assert!(!has_header(&envelope, "x-api-key"));
        assert_eq!(envelope.query, "x=1");
    }
    let refused = [
        post(&ingress, "/in/key-header").header("X-Api-Key", "k3"),
        post(&ingress, "/in/key-header").header("X-Api-Key", ""),
        post(&ingress, "/in/key-header?X-Api-Key=k1"),
        post(&ingress, "/in/key-header"),
        post(&ingress, "/in/key-query?api_key=k2"),
        post(&ingress, "/in/key-query?api_key="),
        post(&ingress, "/in/key-query?api_key=k1&api_key=k1"),
        post(&ingress, "/in/key-query").header("api_key", "k1"),
    ];
    for (n, builder) in refused.into_iter().enumerate() {
        assert_eq!(status(builder).await?, 401, "case {n}");
    }
    assert_eq!(ingress.stored().await?, 3);
    ingress.stop().await
}

#[tokio::test]
async fn allow_ips_checks_the_client_and_forwarded_for_only_from_trusted_proxies()
-> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = spawn(&nats).await?;
    assert_eq!(status(post(&ingress, "/in/local")).await?, 202);
    assert_eq!(status(post(&ingress, "/in/private")).await?, 403);

    let xff = |path: &str, value: &str| post(&ingress, path).header("X-Forwarded-For", value);
    // The peer (127.0.0.1) is a trusted proxy: the right-most untrusted entry is the client.
    assert_eq!(
        status(xff("/in/proxied", "198.51.100.1, 203.0.113.5, 127.0.0.2")).await?,
        202
    );
    assert_eq!(
        status(xff("/in/proxied", "203.0.113.5, 198.51.100.1")).await?,
        403
    );
    assert_eq!(status(post(&ingress, "/in/proxied")).await?, 403);
    // The peer is not trusted there, so its X-Forwarded-For is a claim, not a fact.
    assert_eq!(status(xff("/in/untrusted", "203.0.113.5")).await?, 403);
    // Unreadable chains are refused, not guessed at.
    let huge = "127.0.0.1,".repeat(4000);
    for hostile in ["not-an-ip", "203.0.113.5:99999", huge.as_str()] {
        assert_eq!(status(xff("/in/proxied", hostile)).await?, 403);
    }
    assert_eq!(ingress.stored().await?, 2);
    ingress.stop().await
}

#[tokio::test]
async fn requests_past_the_burst_get_429_with_retry_after() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = spawn(&nats).await?;
    // A burst of 3 refilled at 1/s: 3 quick requests pass, the 4th waits for a token.
    for _ in 0..3 {
        assert_eq!(status(post(&ingress, "/in/rated")).await?, 202);
    }
    let limited = post(&ingress, "/in/rated").send().await?;
    assert_eq!(limited.status().as_u16(), 429);
    let retry_after: u64 = limited
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("429 without a numeric Retry-After"))?;
    assert_eq!(retry_after, 1);
    // Other sources have their own budget.
    assert_eq!(status(post(&ingress, "/in/local")).await?, 202);
    ingress.stop().await
}

#[tokio::test]
async fn unlisted_content_types_get_415() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = spawn(&nats).await?;
    let untyped = || ingress.http.post(ingress.url("/in/json")).body("{}");
    let with_type = |value: &str| untyped().header(CONTENT_TYPE, value);
    assert_eq!(
        status(with_type("Application/JSON; charset=utf-8")).await?,
        202
    );
    assert_eq!(status(with_type("text/plain")).await?, 415);
    assert_eq!(status(with_type("application/jsonp")).await?, 415);
    assert_eq!(status(untyped()).await?, 415);
    // Two types are not one of the listed ones.
    let twice = with_type("application/json").header(CONTENT_TYPE, "application/json");
    assert_eq!(status(twice).await?, 415);
    assert_eq!(ingress.stored().await?, 1);
    ingress.stop().await
}

#[tokio::test]
async fn a_stalled_body_gets_408_while_other_requests_are_served() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = spawn(&nats).await?;
    let started = tokio::time::Instant::now();
    // Headers and 1 of 10 body bytes, then nothing.
    let mut stalled = tokio::net::TcpStream::connect(ingress.addr).await?;
    stalled
        .write_all(b"POST /in/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
        .await?;
    assert_eq!(status(post(&ingress, "/in/slow")).await?, 202);
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 256];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            let n = stalled.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "connection closed before a status line");
            answer.extend_from_slice(&buf[..n]);
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), read).await??;
    assert!(
        answer.starts_with(b"HTTP/1.1 408 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    // read_timeout is 1s.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(ingress.stored().await?, 1);
    ingress.stop().await
}
