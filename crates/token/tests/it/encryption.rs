//! Token records at rest: sealed, bound to their connection, readable across key rotation and
//! restarts, refused with a clear error under a wrong key.

use hookyard_testkit::Nats;
use tonic::Code;

use crate::stored::{Ports, Setup, Stored, connect, crm_config, key, quick_policy, topology};
use hookyard_testkit::oauth::{AuthServer, browser, click_connect, consent_at, open};

/// Version of the key a raw record is sealed with.
fn version(raw: &[u8]) -> u32 {
    u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]])
}

fn contains(raw: &[u8], text: &str) -> bool {
    raw.windows(text.len()).any(|w| w == text.as_bytes())
}

#[tokio::test]
async fn stored_records_do_not_reveal_tokens() {
    let setup = Setup::start(3600, quick_policy()).await;
    assert_eq!(connect(&setup).await.0, 200);
    let token = setup.service.get("crm").await.expect("token").access_token;

    let raw = setup.raw("token.crm").await.expect("record");
    assert!(!contains(&raw, &token));
    assert!(!contains(&raw, "refresh-"));
    assert!(!contains(&raw, "access_token"));
    assert!(serde_json::from_slice::<serde_json::Value>(&raw).is_err());
    assert_eq!(version(&raw), 1);
}

#[tokio::test]
async fn swapped_records_fail_to_decrypt() {
    let nats = Nats::start().await.expect("nats");
    let topology = topology();
    let ports = Ports::bind().await;
    let server = AuthServer::start(&ports.redirect_uri(), 3600).await;
    let config = format!(
        "{}{}",
        crm_config(&server.url, &ports.redirect_uri()),
        crm_config(&server.url, &ports.redirect_uri())
            .replace("connections.crm", "connections.crm2")
    );
    let service = Stored::spawn(&nats, &topology, ports, &config, &key(1, 1), quick_policy()).await;
    let browser = browser();
    for connection in ["crm", "crm2"] {
        let authorize = click_connect(&browser, &service.consent, connection).await;
        let callback = consent_at(&browser, &authorize).await;
        assert_eq!(open(&browser, &callback).await.0, 200);
        service.get(connection).await.expect("token");
    }
    let setup_kv = async_nats::jetstream::new(nats.client().await.expect("client"))
        .get_key_value(topology.tokens_bucket())
        .await
        .expect("bucket");
    let a = setup_kv.get("token.crm").await.expect("read").expect("crm");
    let b = setup_kv
        .get("token.crm2")
        .await
        .expect("read")
        .expect("crm2");
    setup_kv.put("token.crm", b).await.expect("write");
    setup_kv.put("token.crm2", a).await.expect("write");

    for connection in ["crm", "crm2"] {
        let status = service.get(connection).await.expect_err("swapped");
        assert_eq!(status.code(), Code::FailedPrecondition, "{connection}");
    }
    let page: url::Url = format!("{}/", service.consent).parse().expect("url");
    let (_, page) = open(&browser, &page).await;
    assert!(page.contains("data-state=\"broken\""), "{page}");
}

#[tokio::test]
async fn key_rotation_reads_old_records_and_reseals_them_with_the_new_key() {
    let setup = Setup::start(3600, quick_policy()).await;
    assert_eq!(connect(&setup).await.0, 200);
    let token = setup.service.get("crm").await.expect("token").access_token;
    let config = crm_config(&setup.server.url, "http://127.0.0.1:1/oauth/callback");

    // Restart with v2 current and v1 still configured: the v1 record is read as it is.
    let rotated = format!("{},{}", key(2, 2), key(1, 1));
    let second = Stored::spawn(
        &setup.nats,
        &setup.topology,
        Ports::bind().await,
        &config,
        &rotated,
        quick_policy(),
    )
    .await;
    assert_eq!(second.get("crm").await.expect("token").access_token, token);
    assert_eq!(version(&setup.raw("token.crm").await.expect("record")), 1);

    // The next write (here: a partner refused the token, so it is renewed) seals with v2.
    assert!(second.invalidate("crm", &token).await);
    assert_eq!(version(&setup.raw("token.crm").await.expect("record")), 2);
    let renewed = second.get("crm").await.expect("renewed").access_token;
    assert_ne!(renewed, token);
    assert_eq!(version(&setup.raw("token.crm").await.expect("record")), 2);

    // v1 can now be retired.
    let third = Stored::spawn(
        &setup.nats,
        &setup.topology,
        Ports::bind().await,
        &config,
        &key(2, 2),
        quick_policy(),
    )
    .await;
    assert_eq!(third.get("crm").await.expect("token").access_token, renewed);
}

#[tokio::test]
async fn wrong_key_is_a_clear_error_and_the_record_is_kept() {
    let setup = Setup::start(3600, quick_policy()).await;
    assert_eq!(connect(&setup).await.0, 200);
    let token = setup.service.get("crm").await.expect("token").access_token;
    let before = setup.raw("token.crm").await.expect("record");
    let config = crm_config(&setup.server.url, "http://127.0.0.1:1/oauth/callback");

    // Same version, other key bytes; and a version that is not configured at all.
    for keys in [key(1, 9), key(3, 1)] {
        let wrong = Stored::spawn(
            &setup.nats,
            &setup.topology,
            Ports::bind().await,
            &config,
            &keys,
            quick_policy(),
        )
        .await;
        let status = wrong.get("crm").await.expect_err("wrong key");
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(!status.message().contains(&token));
    }
    assert_eq!(setup.raw("token.crm").await.expect("record"), before);
    assert_eq!(
        setup.service.get("crm").await.expect("token").access_token,
        token
    );
}
