//! The real `hookyard-egress` binary with `--audit`, started before NATS: it waits instead of
//! exiting, reports NOT_SERVING meanwhile (still making calls), and becomes SERVING without a
//! restart once NATS is up and the audit stream exists; the record of a call made before then
//! is stored.

use std::{io::Write as _, time::Duration};

use hookyard_proto::egress::v1::egress_service_client::EgressServiceClient;
use hookyard_testkit::{Nats, process::Process, unique_namespace, wait_for};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::call;

/// How long NATS is held back after egress started. A fixed period is the scenario itself
/// (NATS started some seconds after the service), not a stand-in for a condition; a few
/// seconds cover several of the service's retries.
const NATS_LATE_BY: Duration = Duration::from_secs(3);

#[tokio::test]
async fn egress_with_audit_waits_for_nats_and_becomes_ready_without_a_restart() {
    let partner = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;
    let mut config = tempfile::NamedTempFile::new().expect("config file");
    write!(
        config,
        "[connections.partner]\nbase_url = \"{}\"\nallow_private = [\"127.0.0.0/8\"]\n",
        partner.uri()
    )
    .expect("write config");
    let nats_port = Nats::free_port().expect("nats port");
    let listen = Nats::free_port().expect("egress port");
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    let listen_on = format!("127.0.0.1:{listen}");
    let namespace = unique_namespace("egs");
    let config_path = config.path().to_str().expect("utf-8 path");
    let mut egress = Process::spawn(
        env!("CARGO_BIN_EXE_hookyard-egress"),
        &[
            "--config",
            config_path,
            "--nats-url",
            &nats_url,
            "--listen",
            &listen_on,
            "--namespace",
            &namespace,
            "--audit",
        ],
        std::iter::empty::<(&str, &str)>(),
        format!("http://{listen_on}"),
    )
    .expect("start egress");

    wait_for(
        Duration::from_secs(30),
        "egress to answer NOT_SERVING",
        || egress.not_serving(),
    )
    .await
    .expect("not serving while nats is down");
    let mut early = call("partner", "GET", "/early");
    early.event_id = "evt-early".to_owned();
    let answer = EgressServiceClient::connect(format!("http://{listen_on}"))
        .await
        .expect("connect")
        .call(early)
        .await
        .expect("calls are made while nats is down")
        .into_inner();
    assert_eq!(answer.status, 200);
    let held_back = tokio::time::Instant::now() + NATS_LATE_BY;
    while tokio::time::Instant::now() < held_back {
        assert!(egress.is_running(), "egress exited while nats was down");
        assert!(egress.not_serving().await, "egress ready without nats");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let nats = Nats::start_on(nats_port).await.expect("nats");
    wait_for(
        Duration::from_secs(30),
        "egress to report SERVING",
        || async { egress.health().await.is_ok() },
    )
    .await
    .expect("serving once nats is up");
    assert!(egress.is_running());
    let js = async_nats::jetstream::new(nats.client().await.expect("client"));
    let topology = hookyard_core::streams::Topology::new(&namespace);
    let subject = topology.audit_egress_subject("partner", "evt-early");
    let stream = js
        .get_stream(topology.audit_stream())
        .await
        .expect("egress created the audit stream");
    let record = stream
        .get_last_raw_message_by_subject(&subject)
        .await
        .expect("the early call's record is stored");
    let record: serde_json::Value = serde_json::from_slice(&record.payload).expect("json record");
    assert_eq!(record["url"], format!("{}/early", partner.uri()));
}
