//! Several token-service processes (the real binary) on one token store renew an expired token
//! once between them.

use std::{
    process::Stdio,
    time::{Duration, SystemTime},
};

use futures::future::join_all;
use hookyard_proto::token::v1::{GetTokenRequest, token_service_client::TokenServiceClient};
use hookyard_testkit::{Nats, free_port, unique_namespace, wait_for};
use tonic::transport::Channel;

use crate::stored::{crm_config, key};
use hookyard_testkit::oauth::{
    AuthServer, CLIENT_SECRET, browser, click_connect, consent_at, open,
};

/// A `hookyard-token` process; killed when dropped.
struct Replica {
    _child: tokio::process::Child,
    grpc: u16,
}

impl Replica {
    fn spawn(config: &std::path::Path, nats: &str, namespace: &str, http: u16) -> Self {
        let grpc = free_port().expect("a free port");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookyard-token"))
            .arg("--config")
            .arg(config)
            .args(["--nats-url", nats, "--namespace", namespace])
            .args(["--listen", &format!("127.0.0.1:{grpc}")])
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .env("HOOKYARD_TOKEN_KEYS", key(1, 7))
            .env("CRM_SECRET", CLIENT_SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn hookyard-token");
        Self {
            _child: child,
            grpc,
        }
    }

    /// A client of the replica, once it serves: its token store is open, so its consent page
    /// and tokens work.
    async fn client(&self) -> TokenServiceClient<Channel> {
        let url = format!("http://127.0.0.1:{}", self.grpc);
        wait_for(Duration::from_secs(20), "the replica to serve", || async {
            hookyard_core::health::probe(&url, Duration::from_secs(1))
                .await
                .is_ok()
        })
        .await
        .expect("the replica serves");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match TokenServiceClient::connect(url.clone()).await {
                Ok(client) => return client,
                Err(error) if tokio::time::Instant::now() > deadline => {
                    panic!("token service at {url} does not listen: {error}")
                }
                // The process is starting; connecting again is the wait.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

#[tokio::test]
async fn hundred_callers_on_three_processes_renew_an_expired_token_once() {
    let nats = Nats::start().await.expect("nats");
    let namespace = unique_namespace("tkp");
    let http = free_port().expect("a free port");
    let redirect = format!("http://127.0.0.1:{http}/oauth/callback");
    // Tokens from the consent live 1 s; the renewal is slow, so callers pile up behind it.
    let server = AuthServer::start(&redirect, 1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("integration.toml");
    std::fs::write(&config, crm_config(&server.url, &redirect)).expect("write config");

    let replicas = [
        Replica::spawn(&config, &nats.url(), &namespace, http),
        Replica::spawn(
            &config,
            &nats.url(),
            &namespace,
            free_port().expect("a free port"),
        ),
        Replica::spawn(
            &config,
            &nats.url(),
            &namespace,
            free_port().expect("a free port"),
        ),
    ];
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(replica.client().await);
    }

    let browser = browser();
    let consent = format!("http://127.0.0.1:{http}");
    let authorize = click_connect(&browser, &consent, "crm").await;
    let callback = consent_at(&browser, &authorize).await;
    assert_eq!(open(&browser, &callback).await.0, 200);
    let expired_after = SystemTime::now() + Duration::from_millis(1100);
    server.set_expires_in(3600);
    server.set_delay(Duration::from_millis(300));
    // Waiting for the clock: the access token must have expired, not merely be due.
    wait_for(
        Duration::from_secs(5),
        "the access token to expire",
        || async { SystemTime::now() > expired_after },
    )
    .await
    .expect("expired");

    let calls = (0..100).map(|i| {
        let mut client = clients[i % clients.len()].clone();
        async move {
            client
                .get_token(GetTokenRequest {
                    connection: "crm".to_owned(),
                })
                .await
                .map(|r| r.into_inner().access_token)
        }
    });
    let tokens = join_all(calls).await;

    let first = tokens[0].as_ref().expect("token").clone();
    assert_ne!(first, "access-2", "the expired token is not handed out");
    for token in &tokens {
        assert_eq!(token.as_ref().expect("token"), &first);
    }
    assert_eq!(server.requests("refresh_token"), 1);
}
