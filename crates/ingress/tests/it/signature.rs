//! Signed sources: the signature is checked over the bytes received, before anything is stored.

use std::time::Duration;

use hookyard_testkit::Nats;
use reqwest::header::WWW_AUTHENTICATE;

use crate::harness::{self, GITHUB, accepted_id};

/// GitHub's documentation example: the body and its `X-Hub-Signature-256` under
/// `harness::GITHUB_SECRET`.
const BODY: &str = "Hello, World!";
const SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[tokio::test]
async fn a_signed_request_is_stored_and_a_tampered_one_refused() -> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, Duration::from_secs(5)).await?;
    let send = |body: &'static str, signature: &'static str| {
        ingress
            .http
            .post(ingress.url(GITHUB))
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
    };

    for (case, body, signature, kind) in [
        (
            "tampered body",
            "Hello, World?",
            SIGNATURE,
            "signature_mismatch",
        ),
        ("no signature", BODY, "", "signature_malformed"),
    ] {
        let refused = send(body, signature).await?;
        assert_eq!(refused.status().as_u16(), 401, "{case}");
        assert!(refused.headers().get(WWW_AUTHENTICATE).is_none(), "{case}");
        let answer: serde_json::Value = refused.json().await?;
        assert_eq!(answer["error"], kind, "{case}");
    }
    assert_eq!(ingress.stored().await?, 0);

    let id = accepted_id(send(BODY, SIGNATURE).await?).await?;
    let stored = ingress.messages().await?;
    assert_eq!(stored.len(), 1);
    let envelope = &stored[0].1;
    assert_eq!(envelope.id, id);
    assert_eq!(envelope.body, BODY.as_bytes());
    // The signature header is event data: kept as received.
    assert!(
        envelope
            .headers
            .iter()
            .any(|h| h.name == "x-hub-signature-256" && h.value == SIGNATURE.as_bytes())
    );
    ingress.stop().await
}

/// Svix's test vector (the svix-webhooks library tests and the Standard Webhooks README); the
/// signature is computed here rather than copied, so the test checks the scheme, not a string.
const SVIX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SVIX_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SVIX_TIMESTAMP: &str = "1614265330";
const SVIX_BODY: &str = r#"{"test": 2432232314}"#;
const SVIX_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn standard_webhooks_signature(secret: &str, id: &str, timestamp: &str, body: &str) -> String {
    use base64::{Engine, engine::general_purpose::STANDARD};
    use hmac::Mac;
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("base64 key");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn svix_header_names_are_verified_like_the_standard_ones() -> anyhow::Result<()> {
    let signature = standard_webhooks_signature(SVIX_SECRET, SVIX_ID, SVIX_TIMESTAMP, SVIX_BODY);
    assert_eq!(signature, SVIX_SIGNATURE);

    // The vector's timestamp is from 2021: the tolerance reaches back to it.
    let integration = hookyard_core::Integration::parse(
        r#"
[sources.svix]
path = "/hooks/svix"
signature = { scheme = "standard_webhooks", secrets = ["${env:SVIX_SECRET}"], tolerance = "40years" }
"#,
        &|name| (name == "SVIX_SECRET").then(|| SVIX_SECRET.to_owned()),
    )?;
    let nats = Nats::start().await?;
    let ingress = harness::spawn_serving(nats.client().await?, integration).await?;
    let send = |family: &str, id: &str, signature: &str| {
        ingress
            .http
            .post(ingress.url("/hooks/svix"))
            .header(format!("{family}-id"), id)
            .header(format!("{family}-timestamp"), SVIX_TIMESTAMP)
            .header(format!("{family}-signature"), signature)
            .body(SVIX_BODY)
            .send()
    };

    let tampered = send("svix", "msg_other", &signature).await?;
    assert_eq!(tampered.status().as_u16(), 401);
    let answer: serde_json::Value = tampered.json().await?;
    assert_eq!(answer["error"], "signature_mismatch");
    assert_eq!(ingress.stored().await?, 0);

    let by_svix = accepted_id(send("svix", SVIX_ID, &signature).await?).await?;
    let by_standard = accepted_id(send("webhook", SVIX_ID, &signature).await?).await?;
    // The delivery id is the dedup key under either name, so the two are one event.
    assert_eq!(by_svix, by_standard);
    let stored = ingress.messages().await?;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.id, by_svix);
    assert_eq!(stored[0].1.dedup_key, SVIX_ID);
    assert_eq!(stored[0].1.body, SVIX_BODY.as_bytes());
    ingress.stop().await
}
