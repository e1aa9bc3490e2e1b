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
