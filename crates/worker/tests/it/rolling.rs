//! Rolling restarts under load: real `hookyard-worker` processes stopped with SIGTERM while work
//! keeps arriving lose nothing, and dead-letter nothing that was never tried.

use std::{
    collections::HashSet,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use async_nats::jetstream;
use hookyard_core::streams::Topology;
use hookyard_testkit::{Nats, free_port, unique_namespace, wait_for};
use tokio::process::{Child, Command};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

use crate::{HANDLER, publish_work, start_egress, stored};

/// Events per second while the workers restart, and for how long.
const RATE: u64 = 100;
const SENDING: Duration = Duration::from_secs(12);
const RESTARTS: usize = 10;

struct Process {
    child: Child,
    health: String,
}

/// Starts a worker process for the handler and waits until it reports serving.
async fn start(
    config: &std::path::Path,
    nats: &Nats,
    topology: &Topology,
    egress: &str,
) -> anyhow::Result<Process> {
    let listen = format!("127.0.0.1:{}", free_port()?);
    let child = Command::new(env!("CARGO_BIN_EXE_hookyard-worker"))
        .env("HOOKYARD_CONFIG", config)
        .env("HOOKYARD_NATS_URL", nats.url())
        .env("HOOKYARD_NAMESPACE", topology.namespace())
        .env("HOOKYARD_WORKER_HANDLERS", HANDLER)
        .env("HOOKYARD_EGRESS_ENDPOINT", egress)
        .env("HOOKYARD_WORKER_LISTEN", &listen)
        .env("HOOKYARD_SHUTDOWN_GRACE", "5s")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("start hookyard-worker")?;
    let health = format!("http://{listen}");
    let probe = health.clone();
    wait_for(Duration::from_secs(30), "the worker to serve", || {
        let probe = probe.clone();
        async move {
            hookyard_core::health::probe(&probe, Duration::from_secs(1))
                .await
                .is_ok()
        }
    })
    .await?;
    Ok(Process { child, health })
}

/// SIGTERM, then waits for the process to drain and exit on its own.
async fn stop(mut process: Process) -> anyhow::Result<()> {
    let pid = process.child.id().context("worker already exited")?;
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    ensure!(status.success(), "kill -TERM {pid} failed");
    let exit = tokio::time::timeout(Duration::from_secs(30), process.child.wait())
        .await
        .context("worker did not exit after SIGTERM")??;
    ensure!(
        exit.success(),
        "worker {} exited with {exit}",
        process.health
    );
    Ok(())
}

#[tokio::test]
async fn ten_sigterms_under_load_lose_nothing_and_dead_letter_nothing_untried() -> anyhow::Result<()>
{
    let nats = Nats::start().await?;
    let js = jetstream::new(nats.client().await?);
    let topology = Topology::new(&unique_namespace("roll"));
    topology.ensure_work_and_dlq(&js).await?;
    let partner = MockServer::start().await;
    // Slow enough that every stop finds deliveries in flight and fetched.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(30)))
        .mount(&partner)
        .await;
    let (egress, calls) = start_egress(&partner.uri()).await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("hookyard.toml");
    // Few deliveries allowed: returned deliveries that counted would exhaust them at once.
    std::fs::write(
        &config,
        format!(
            r#"
[handlers.{HANDLER}]
max_deliver = 2
backoff = ["200ms"]
steps = [{{ type = "http", connection = "partner", method = "POST", path = "/orders" }}]

[connections.partner]
base_url = "{}"
"#,
            partner.uri()
        ),
    )?;

    let mut workers = vec![
        start(&config, &nats, &topology, &egress).await?,
        start(&config, &nats, &topology, &egress).await?,
    ];
    let sender = {
        let (js, topology) = (js.clone(), topology.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
            while started.elapsed() < SENDING {
                tick.tick().await;
                publish_work(&js, &topology, &format!("evt_roll{sent:05}")).await?;
                sent += 1;
            }
            anyhow::Ok(sent)
        })
    };
    for restart in 0..RESTARTS {
        let old = workers.remove(restart % workers.len());
        stop(old).await?;
        workers.push(start(&config, &nats, &topology, &egress).await?);
    }
    let sent = sender.await??;

    wait_for(
        Duration::from_secs(60),
        "every event to be handled",
        || async {
            let consumer: Result<jetstream::consumer::PullConsumer, _> = js
                .get_consumer_from_stream(
                    topology.handler_consumer(HANDLER),
                    topology.work_stream(),
                )
                .await;
            match consumer {
                Ok(mut c) => c.info().await.is_ok_and(|i| {
                    i.ack_floor.stream_sequence == sent
                        && i.num_ack_pending == 0
                        && i.num_pending == 0
                }),
                Err(_) => false,
            }
        },
    )
    .await?;
    let called: HashSet<String> = calls.all().into_iter().map(|c| c.event_id).collect();
    assert_eq!(called.len() as u64, sent, "every event reached the partner");
    let dead = stored(&js, &topology.dlq_stream()).await?;
    assert!(dead.is_empty(), "{} dead letters", dead.len());
    for worker in workers {
        stop(worker).await?;
    }
    Ok(())
}
