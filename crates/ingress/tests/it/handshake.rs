//! Handshakes are answered by ingress and never stored; everything else on the same source is a
//! normal event.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use hookyard_core::config::{Handshake, Secret, SecretRef, Signature, Source};
use hookyard_testkit::Nats;
use reqwest::header::CONTENT_TYPE;
use sha2::Sha256;

use crate::harness::{self, META, SLACK, accepted_id};

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const VERIFY_TOKEN: &str = "meta-verify-token";

/// The `slack` source: Slack-signed, answering `url_verification`.
pub fn slack_source(mut source: Source) -> (String, Source) {
    source.signature = Some(Signature::Slack {
        secrets: vec![Secret::from_value(
            SecretRef::Env("SLACK_SECRET".into()),
            SLACK_SECRET,
        )],
        tolerance: Duration::from_secs(300),
    });
    source.handshake = Some(Handshake::Slack {});
    ("slack".to_owned(), source)
}

/// The `meta` source: POST-only, answering WebSub verification GETs.
pub fn websub_source(mut source: Source) -> (String, Source) {
    source.methods = vec!["POST".to_owned()];
    source.handshake = Some(Handshake::Websub {
        verify_token: Secret::from_value(SecretRef::Env("META_VERIFY_TOKEN".into()), VERIFY_TOKEN),
    });
    ("meta".to_owned(), source)
}

pub fn slack_headers(body: &str) -> anyhow::Result<[(&'static str, String); 2]> {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut mac = Hmac::<Sha256>::new_from_slice(SLACK_SECRET.as_bytes())?;
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    Ok([
        ("X-Slack-Request-Timestamp", timestamp.to_string()),
        (
            "X-Slack-Signature",
            format!("v0={}", hex::encode(mac.finalize().into_bytes())),
        ),
    ])
}

#[tokio::test]
async fn slack_url_verification_is_answered_unstored_and_events_on_the_source_are_stored()
-> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, Duration::from_secs(5)).await?;
    let post = |body: &'static str, signed: bool| -> anyhow::Result<_> {
        let mut request = ingress.http.post(ingress.url(SLACK)).body(body);
        if signed {
            for (name, value) in slack_headers(body)? {
                request = request.header(name, value);
            }
        }
        Ok(request.send())
    };
    let verification = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;

    // Slack signs the handshake too: without a signature it is refused like any request.
    let unsigned = post(verification, false)?.await?;
    assert_eq!(unsigned.status().as_u16(), 401);

    let answered = post(verification, true)?.await?;
    assert_eq!(answered.status().as_u16(), 200);
    let answer: serde_json::Value = answered.json().await?;
    assert_eq!(
        answer,
        serde_json::json!({ "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" })
    );
    assert_eq!(ingress.stored().await?, 0);

    let event = r#"{"type":"event_callback","event":{"type":"app_mention","text":"hi"}}"#;
    let id = accepted_id(post(event, true)?.await?).await?;
    let stored = ingress.messages().await?;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.id, id);
    assert_eq!(stored[0].1.body, event.as_bytes());
    ingress.stop().await
}

#[tokio::test]
async fn websub_get_answers_the_challenge_for_the_right_token_only_and_stores_nothing()
-> anyhow::Result<()> {
    let nats = Nats::start().await?;
    let ingress = harness::spawn(nats.client().await?, Duration::from_secs(5)).await?;
    let get = |token: &str| {
        ingress
            .http
            .get(ingress.url(&format!(
                "{META}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={token}"
            )))
            .send()
    };

    let answered = get(VERIFY_TOKEN).await?;
    assert_eq!(answered.status().as_u16(), 200);
    assert_eq!(
        answered
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(answered.text().await?, "1158201444");

    let refused = get("not-the-token").await?;
    assert_eq!(refused.status().as_u16(), 403);
    let answer: serde_json::Value = refused.json().await?;
    assert_eq!(answer["error"], "handshake_forbidden");

    // The source takes POST only: the handshake's GET is accepted, no other GET is.
    assert_eq!(ingress.status(META).await, Some(405));
    assert_eq!(ingress.stored().await?, 0);
    ingress.stop().await
}
