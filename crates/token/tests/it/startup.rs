//! The real `hookyard-token` binary with a token key (tokens in NATS KV), started before NATS:
//! it waits instead of exiting, reports NOT_SERVING meanwhile and refuses token requests with
//! `UNAVAILABLE`, and becomes SERVING without a restart once NATS is up and the token bucket
//! exists.

use std::{io::Write as _, time::Duration};

use base64::Engine as _;
use hookyard_proto::token::v1::{GetTokenRequest, token_service_client::TokenServiceClient};
use hookyard_testkit::{Nats, process::Process, unique_namespace, wait_for};

/// How long NATS is held back after the token service started. A fixed period is the scenario
/// itself (NATS started some seconds after the service), not a stand-in for a condition; a few
/// seconds cover several of the service's retries.
const NATS_LATE_BY: Duration = Duration::from_secs(3);

#[tokio::test]
async fn token_service_with_a_store_waits_for_nats_and_becomes_ready_without_a_restart() {
    let mut config = tempfile::NamedTempFile::new().expect("config file");
    config
        .write_all(
            b"[connections.erp]\nbase_url = \"http://127.0.0.1:9\"\nallow_private = [\"127.0.0.0/8\"]\nauth = { type = \"oauth2_client_credentials\", token_url = \"http://127.0.0.1:9/token\", client_id = \"hookyard\", client_secret = \"${env:ERP_SECRET}\" }\n",
        )
        .expect("write config");
    let nats_port = Nats::free_port().expect("nats port");
    let listen = format!("127.0.0.1:{}", Nats::free_port().expect("grpc port"));
    let http_listen = format!("127.0.0.1:{}", Nats::free_port().expect("http port"));
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    let namespace = unique_namespace("tks");
    let key = format!(
        "1:{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    );
    let config_path = config.path().to_str().expect("utf-8 path");
    let mut token = Process::spawn(
        env!("CARGO_BIN_EXE_hookyard-token"),
        &[
            "--config",
            config_path,
            "--nats-url",
            &nats_url,
            "--listen",
            &listen,
            "--http-listen",
            &http_listen,
            "--namespace",
            &namespace,
        ],
        [("HOOKYARD_TOKEN_KEYS", key.as_str()), ("ERP_SECRET", "s")],
        format!("http://{listen}"),
    )
    .expect("start token service");

    wait_for(
        Duration::from_secs(30),
        "token to answer NOT_SERVING",
        || token.not_serving(),
    )
    .await
    .expect("not serving while nats is down");
    let mut client = TokenServiceClient::connect(format!("http://{listen}"))
        .await
        .expect("connect");
    let refused = client
        .get_token(GetTokenRequest {
            connection: "erp".to_owned(),
        })
        .await
        .expect_err("no token without the store");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let held_back = tokio::time::Instant::now() + NATS_LATE_BY;
    while tokio::time::Instant::now() < held_back {
        assert!(
            token.is_running(),
            "token service exited while nats was down"
        );
        assert!(
            token.not_serving().await,
            "token service ready without nats"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let nats = Nats::start_on(nats_port).await.expect("nats");
    wait_for(
        Duration::from_secs(30),
        "token to report SERVING",
        || async { token.health().await.is_ok() },
    )
    .await
    .expect("serving once nats is up");
    assert!(token.is_running());
    let js = async_nats::jetstream::new(nats.client().await.expect("client"));
    let topology = hookyard_core::streams::Topology::new(&namespace);
    js.get_key_value(topology.tokens_bucket())
        .await
        .expect("the token service created its bucket");
}
