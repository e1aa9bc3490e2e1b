//! A property-based fuzzer over the whole request path of a real ingress (real NATS, real
//! sockets): arbitrary methods, paths, headers and bodies — random bytes, JSON-like text,
//! nesting far past the depth bound, bodies over the size limit — each written raw to the
//! socket. Every request must get a status line, and only a 2xx, a 4xx or a 503: no crash, no
//! 500, no connection dropped without an answer. Bounded in cases so it runs with the suite.

use std::time::Duration;

use hookyard_core::config::{DedupKey, Secret, SecretRef, Signature};
use hookyard_testkit::Nats;
use proptest::{collection::vec, prelude::*, sample::select, test_runner::TestRunner};

use crate::harness::{self, GITHUB, META, OPEN, SHOP, SLACK, raw_status};

/// Cases per run: enough to cover every generator branch many times in a few seconds.
const CASES: u32 = 1_000;
/// Every source's body limit here: room for nesting deep enough to overflow a reader's stack.
const BODY_LIMIT: usize = 1024 * 1024;

/// Mostly the sources that read bodies, where the parsers are; the rest of the router too.
fn paths() -> impl Strategy<Value = String> {
    let sources = select(vec![
        SHOP,
        OPEN,
        GITHUB,
        SLACK,
        META,
        "/hooks/jq",
        "/hooks/stripe",
        "/hooks/standard",
    ]);
    let others = select(vec![
        "/hooks/nope",
        "/hooks/open?hub.mode=subscribe&hub.challenge=%ff%00",
        "/readyz",
        "//hooks/open",
        "/hooks/open/../shop",
    ]);
    prop_oneof![4 => sources, 1 => others].prop_map(str::to_owned)
}

fn methods() -> impl Strategy<Value = &'static str> {
    let others = select(vec![
        "PUT", "GET", "DELETE", "OPTIONS", "HEAD", "PATCH", "BREW",
    ]);
    prop_oneof![4 => Just("POST"), 1 => others]
}

/// Header values: anything but the bytes that end a header line, which are HTTP's framing
/// (hyper's own parser answers those), not ingress's input.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    vec(
        any::<u8>().prop_filter("not a line end", |b| *b != b'\r' && *b != b'\n'),
        0..80,
    )
}

fn headers() -> impl Strategy<Value = Vec<(&'static str, Vec<u8>)>> {
    let names = select(vec![
        "Content-Type",
        "X-Delivery-Id",
        "X-Hub-Signature-256",
        "X-Slack-Signature",
        "X-Slack-Request-Timestamp",
        "Stripe-Signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-id",
        "svix-signature",
        "Authorization",
        "X-Forwarded-For",
        "Content-Encoding",
        "Expect",
    ]);
    vec((names, header_value()), 0..6)
}

/// JSON-like text from JSON's own characters, so the readers get far before failing.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    vec(
        select(vec![
            b'{', b'}', b'[', b']', b'"', b':', b',', b'\\', b'1', b'a', b' ', b'.',
        ]),
        0..400,
    )
}

/// Nesting from shallow to far past the depth bound, open or closed, array or object.
fn nested() -> impl Strategy<Value = Vec<u8>> {
    let depth = prop_oneof![0usize..100, 100_000usize..300_000];
    (depth, any::<bool>(), any::<bool>()).prop_map(|(depth, object, closed)| {
        let (open, close) = if object {
            ("{\"id\":", "}")
        } else {
            ("[", "]")
        };
        let mut text = open.repeat(depth);
        text.push('1');
        if closed {
            text.push_str(&close.repeat(depth));
        }
        text.into_bytes()
    })
}

fn bodies() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..600),
        jsonish(),
        nested(),
        // Just over and well over the body limit.
        (0usize..3).prop_map(|k| vec![b'['; BODY_LIMIT + 1 + k * 100_000]),
    ]
}

fn request(method: &str, path: &str, headers: &[(&str, Vec<u8>)], body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nHost: ingress\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn arbitrary_requests_get_a_2xx_4xx_or_503_and_never_crash_ingress() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let mut integration = harness::integration();
    let open = integration.sources["open"].clone();
    let mut add = |name: &str, path: &str, edit: &dyn Fn(&mut hookyard_core::config::Source)| {
        let mut source = open.clone();
        source.path = Some(path.to_owned());
        edit(&mut source);
        integration.sources.insert(name.to_owned(), source);
    };
    add("jq", "/hooks/jq", &|s| {
        s.dedup_key = Some(DedupKey::Expr(hookyard_core::expr::Expr::Jq(
            hookyard_core::expr::Jq::compile(".id").expect("compiles"),
        )));
    });
    let secret = |name: &str, value: &str| Secret::from_value(SecretRef::Env(name.into()), value);
    add("stripe", "/hooks/stripe", &|s| {
        s.signature = Some(Signature::Stripe {
            secrets: vec![secret("STRIPE", "whsec_test")],
            tolerance: Duration::from_secs(300),
        });
    });
    add("standard", "/hooks/standard", &|s| {
        s.signature = Some(Signature::StandardWebhooks {
            secrets: vec![secret("STD", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
            tolerance: Duration::from_secs(300),
        });
    });
    for source in integration.sources.values_mut() {
        source.max_body_bytes = BODY_LIMIT as u64;
    }
    let ingress = harness::spawn_serving(nats.client().await?, integration).await?;
    let addr = ingress.addr;
    // The runner is synchronous: each case blocks this worker thread on its request.
    let runtime = tokio::runtime::Handle::current();

    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (methods(), paths(), headers(), bodies());
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&strategy, |(method, path, headers, body)| {
            let raw = request(method, &path, &headers, &body);
            let status = runtime.block_on(raw_status(addr, &raw)).map_err(|e| {
                let names: Vec<_> = headers.iter().map(|(n, v)| (n, v.len())).collect();
                TestCaseError::fail(format!(
                    "{method} {path} with {names:?} and {} body bytes: no answer: {e:#}",
                    body.len()
                ))
            })?;
            prop_assert!(
                (200..300).contains(&status) || (400..500).contains(&status) || status == 503,
                "{method} {path} with {} body bytes got {status}",
                body.len()
            );
            Ok(())
        })
    });
    let alive = raw_status(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    ingress.stop().await?;
    if let Err(failure) = outcome {
        anyhow::bail!("{failure}");
    }
    anyhow::ensure!(
        matches!(alive, Ok(200)),
        "ingress no longer healthy: {alive:?}"
    );
    Ok(())
}
