//! End-to-end test of the compose stack (`docker-compose.yml`) with the quickstart integration
//! (`examples/compose/integration.toml`): real containers of every service, NATS and the demo
//! partner, driven from the host over their published ports.
//!
//! Phases, on one stack: mixed webhooks delivered as routed; `--scale worker-orders=3` shares
//! the load without touching other services; a replica killed mid-flight loses nothing; NATS
//! restarted while webhooks arrive (503 then 202, nothing lost); a new handler on a new OAuth
//! 2.0 connection deployed as a new service without restarting anything; `down -v` leaves
//! nothing behind. It prints a table.
//!
//! Needs the images `hookyard:<version>` and `hookyard-nats:<version>`: `docker compose build`,
//! or offline `bash deploy/images/build-host.sh` (what `scripts/test.sh` and CI do).

mod project;
mod traffic;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use hookyard_testkit::free_port;
use project::{Project, docker};
use traffic::{Answer, Partner, Sender, Tally};

const PATIENCE: Duration = Duration::from_secs(120);
const TYPES: [&str; 3] = ["order.created", "order.cancelled", "shipment.updated"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Image tag of the stack: `HOOKYARD_VERSION` when set (as `deploy/images/build-host.sh` and
/// `docker-compose.yml` read it), else the workspace version.
fn version() -> anyhow::Result<String> {
    if let Ok(tag) = std::env::var("HOOKYARD_VERSION") {
        return Ok(tag);
    }
    let cargo = std::fs::read_to_string(root().join("Cargo.toml"))?;
    cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .map(str::to_owned)
        .context("workspace version")
}

/// A config directory the containers (uid 10001) can read, holding `integration.toml` and the
/// example's demo admin token.
fn config_dir() -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let token = dir.path().join("admin-token");
    std::fs::copy(root().join("examples/compose/admin-token"), &token)?;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644))?;
    write_config(
        dir.path(),
        &std::fs::read_to_string(root().join("examples/compose/integration.toml"))?,
    )?;
    Ok(dir)
}

/// The router's admin API is published on loopback and behind the example's demo token.
async fn admin_answers_with_the_demo_token_only(port: u16) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(root().join("examples/compose/admin-token"))?;
    let url = format!("http://127.0.0.1:{port}/v1/handlers");
    let http = reqwest::Client::new();
    let refused = http.get(&url).send().await?.status();
    anyhow::ensure!(
        refused == 401,
        "admin api without a token answered {refused}"
    );
    let answered = http.get(&url).bearer_auth(token.trim()).send().await?;
    anyhow::ensure!(
        answered.status() == 200,
        "admin api with the demo token answered {}",
        answered.status()
    );
    let handlers: serde_json::Value = answered.json().await?;
    let names = handlers["handlers"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(names == 3, "three handlers in the example, got {handlers}");
    eprintln!("admin api answers on 127.0.0.1:{port} with the demo token only");
    Ok(())
}

/// Replaces the integration file the way a deploy does: write aside, then rename over.
fn write_config(dir: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = dir.join(".integration.toml.new");
    std::fs::write(&tmp, text)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, dir.join("integration.toml"))?;
    Ok(())
}

/// Sends `count` events round-robin over `types`, `concurrency` at a time.
async fn send_batch(sender: &Arc<Sender>, tag: &str, types: &[&str], count: usize) -> Tally {
    let mut tally = Tally::default();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        let (sender, tag, t) = (
            sender.clone(),
            tag.to_owned(),
            types[n % types.len()].to_owned(),
        );
        tasks.spawn(async move { sender.send(&tag, &t, n).await.1 });
        if tasks.len() >= 8
            && let Some(Ok(a)) = tasks.join_next().await
        {
            tally.record(a);
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(a) = done {
            tally.record(a);
        }
    }
    tally
}

struct Row {
    phase: &'static str,
    tally: Tally,
    delivered: usize,
    duplicates: usize,
}

fn lost(row: &Row) -> usize {
    row.tally.expected().len() - row.delivered
}

/// `event handled` lines of a worker's JSON log: (event id, attempt).
fn handled(logs: &str) -> Vec<(String, u64)> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "event handled")
        .filter_map(|v| Some((v["event_id"].as_str()?.to_owned(), v["attempt"].as_u64()?)))
        .collect()
}

#[tokio::test]
async fn compose_stack_delivers_scales_survives_and_cleans_up() -> anyhow::Result<()> {
    let version = version()?;
    for image in [
        format!("hookyard:{version}"),
        format!("hookyard-nats:{version}"),
    ] {
        docker(&["image", "inspect", &image]).with_context(|| {
            format!("image {image} is missing: run `docker compose build`, or offline `bash deploy/images/build-host.sh`")
        })?;
    }
    let config = config_dir()?;
    let (ingress_port, demo_port, consent_port) = (free_port()?, free_port()?, free_port()?);
    let admin_port = free_port()?;
    let name = format!("hookyardtest{}", std::process::id());
    let mut project = Project::new(
        &root(),
        &name,
        vec![
            ("HOOKYARD_VERSION".into(), version.clone()),
            (
                "HOOKYARD_CONFIG_DIR".into(),
                config.path().display().to_string(),
            ),
            ("HOOKYARD_INGRESS_PORT".into(), ingress_port.to_string()),
            ("HOOKYARD_DEMO_PORT".into(), demo_port.to_string()),
            ("HOOKYARD_CONSENT_PORT".into(), consent_port.to_string()),
            ("HOOKYARD_ADMIN_PORT".into(), admin_port.to_string()),
        ],
    );
    let mut rows = Vec::new();

    // 1. Up from nothing, all healthy, 200 mixed webhooks delivered exactly as routed.
    let started = Instant::now();
    project.cmd(&["up", "-d", "--no-build"])?;
    project.wait_healthy(PATIENCE).await?;
    eprintln!(
        "stack healthy after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    admin_answers_with_the_demo_token_only(admin_port).await?;
    let sender = Arc::new(Sender::new(ingress_port));
    let partner = Partner::new(demo_port);
    let tally = send_batch(&sender, "mixed", &TYPES, 200).await;
    ensure!(
        tally.accepted.len() == 200,
        "all 200 accepted: {:?}",
        tally.other
    );
    let (delivered, duplicates) = partner.wait_delivered(&tally.expected(), PATIENCE).await?;
    let calls = partner.calls().await?;
    for (id, t) in &tally.accepted {
        for h in traffic::handlers_of(t) {
            let Some(c) = calls.get(&traffic::partner_key(id, h)) else {
                continue;
            };
            let (prefix, auth) = if *h == "shipments" {
                ("/carrier/", "basic")
            } else {
                ("/erp/", "bearer")
            };
            ensure!(
                c[0].path.starts_with(prefix) && c[0].auth == auth,
                "{t} for {h} arrived as {:?}",
                c[0]
            );
            // order-audit's program (a subprocess step) scored the order before the call.
            ensure!(
                *h != "order-audit" || c[0].body["risk"].is_string(),
                "{t} for {h} arrived without the program's risk score: {:?}",
                c[0]
            );
        }
    }
    rows.push(Row {
        phase: "mixed types",
        tally,
        delivered,
        duplicates,
    });

    // 2. Scale worker-orders to 3: the replicas share the load; worker-shipments is untouched.
    let shipments_before = project.identity(&project.containers("worker-shipments")?)?;
    project.cmd(&[
        "up",
        "-d",
        "--no-build",
        "--no-recreate",
        "--no-deps",
        "--scale",
        "worker-orders=3",
        "worker-orders",
    ])?;
    project.wait_healthy(PATIENCE).await?;
    let replicas = project.containers("worker-orders")?;
    ensure!(
        replicas.len() == 3,
        "3 worker-orders replicas, got {}",
        replicas.len()
    );
    let tally = send_batch(&sender, "scaled", &["order.created"], 150).await;
    let (delivered, duplicates) = partner.wait_delivered(&tally.expected(), PATIENCE).await?;
    let ids: HashSet<&String> = tally.accepted.iter().map(|(id, _)| id).collect();
    let mut per_replica = Vec::new();
    let mut seen: HashMap<String, (usize, u64)> = HashMap::new();
    for (r, id) in replicas.iter().enumerate() {
        let mine: Vec<(String, u64)> = handled(&project.logs(id)?)
            .into_iter()
            .filter(|(e, _)| ids.contains(e))
            .collect();
        per_replica.push(mine.len());
        for (event, attempt) in mine {
            if let Some((other, other_attempt)) = seen.insert(event.clone(), (r, attempt)) {
                ensure!(
                    other == r || attempt > 1 || other_attempt > 1,
                    "event {event} processed by two replicas without a redelivery"
                );
            }
        }
    }
    eprintln!(
        "worker-orders replicas handled {per_replica:?} of {} events",
        ids.len()
    );
    ensure!(
        per_replica.iter().all(|n| *n > 0),
        "every replica handles some: {per_replica:?}"
    );
    ensure!(
        project.identity(&project.containers("worker-shipments")?)? == shipments_before,
        "worker-shipments was not restarted or recreated"
    );
    rows.push(Row {
        phase: "scaled x3",
        tally,
        delivered,
        duplicates,
    });

    // 3. Kill a worker replica while events are in flight: nothing acknowledged is lost.
    let victim = replicas[1].clone();
    let tally_kill = Arc::new(Mutex::new(Tally::default()));
    let load = {
        let (sender, tally) = (sender.clone(), tally_kill.clone());
        tokio::spawn(async move {
            for n in 0..150 {
                let (_, a) = sender.send("kill", "order.created", n).await;
                if let Ok(mut t) = tally.lock() {
                    t.record(a);
                }
            }
        })
    };
    let accepted = |t: &Arc<Mutex<Tally>>| t.lock().map(|t| t.accepted.len()).unwrap_or(0);
    hookyard_testkit::wait_for(PATIENCE, "30 events in flight", || async {
        accepted(&tally_kill) >= 30
    })
    .await?;
    docker(&["kill", &victim])?;
    load.await?;
    let tally = tally_kill
        .lock()
        .map(|t| t.clone())
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let (delivered, duplicates) = partner.wait_delivered(&tally.expected(), PATIENCE).await?;
    rows.push(Row {
        phase: "replica killed",
        tally,
        delivered,
        duplicates,
    });
    // The killed replica stays exited (a killed container counts as stopped by hand); remove it
    // so the health checks below look at the running stack.
    docker(&["rm", "-f", &victim])?;

    // 4. Restart NATS while webhooks are sent: 503 + Retry-After during, 202 after, none lost.
    let answers = Arc::new(Mutex::new(Vec::<(Instant, Answer)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (sender, answers, stop) = (sender.clone(), answers.clone(), stop.clone());
        tokio::spawn(async move {
            for n in 0..20_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let (at, a) = sender.send("outage", TYPES[n % 3], n).await;
                let pause = matches!(a, Answer::Unavailable { .. } | Answer::Other(_));
                if let Ok(mut v) = answers.lock() {
                    v.push((at, a));
                }
                if pause {
                    // Pace retries of a refused sender; the outage itself is awaited below.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
    };
    let count = |f: fn(&Answer) -> bool| {
        answers
            .lock()
            .map(|v| v.iter().filter(|(_, a)| f(a)).count())
            .unwrap_or(0)
    };
    let is_ok = |a: &Answer| matches!(a, Answer::Accepted { .. });
    let is_503 = |a: &Answer| matches!(a, Answer::Unavailable { .. });
    hookyard_testkit::wait_for(PATIENCE, "traffic before the restart", || async {
        count(is_ok) >= 20
    })
    .await?;
    project.cmd(&["stop", "-t", "5", "nats"])?;
    let stopped_at = Instant::now();
    hookyard_testkit::wait_for(PATIENCE, "503s while NATS is down", || async {
        count(is_503) >= 3
    })
    .await?;
    project.cmd(&["start", "nats"])?;
    let started_at = Instant::now();
    let ok_before = count(is_ok);
    hookyard_testkit::wait_for(PATIENCE, "202s after NATS is back", || async {
        count(is_ok) >= ok_before + 20
    })
    .await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await?;
    let answers = answers
        .lock()
        .map(|v| v.clone())
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let first_after = |from: Instant, f: fn(&Answer) -> bool| {
        answers
            .iter()
            .find(|(at, a)| *at >= from && f(a))
            .map(|(at, _)| *at)
    };
    // As the senders saw it: from the first 503 to the first 202 after NATS came back.
    let first_refusal = first_after(stopped_at, is_503);
    let first_ok = first_after(started_at, is_ok);
    let outage = first_refusal
        .zip(first_ok)
        .map(|(a, b)| b.duration_since(a).as_secs_f64());
    let recovery = first_ok.map(|t| t.duration_since(started_at).as_secs_f64());
    let mut tally = Tally::default();
    for (_, a) in answers {
        tally.record(a);
    }
    ensure!(
        tally.unavailable > 0 && tally.unavailable_without_retry_after == 0,
        "503s with Retry-After: {tally:?}"
    );
    let (delivered, duplicates) = partner.wait_delivered(&tally.expected(), PATIENCE).await?;
    rows.push(Row {
        phase: "nats restarted",
        tally,
        delivered,
        duplicates,
    });

    // 5. A new handler on a new OAuth 2.0 connection: both added to the file, the handler's
    // worker started as a new service; egress and the token service pick the connection up
    // from the file, and nothing else is restarted.
    let everything_before = project.identity(&project.all_containers()?)?;
    let router = project.containers("router")?;
    let reloads = |p: &Project| -> usize {
        router
            .iter()
            .map(|id| {
                p.logs(id)
                    .map(|l| l.matches("routes reloaded").count())
                    .unwrap_or(0)
            })
            .sum()
    };
    let reloads_before = reloads(&project);
    let added = r#"
[[routes]]
event = "refund.created"
handlers = ["refunds"]

[handlers.refunds]
ack_wait = "10s"

[[handlers.refunds.steps]]
type = "http"
connection = "billing"
path = "/v1/refunds"
body = { jq = "{ refund: .refund.id, amount: .refund.amount }" }

[connections.billing]
base_url = "http://demo:9000/billing"
allow_private = ["172.16.0.0/12", "192.168.0.0/16"]
auth = { type = "oauth2_client_credentials", token_url = "http://demo:9000/oauth2/token", client_id = "hookyard", client_secret = "${env:ERP_CLIENT_SECRET}", scopes = ["refunds.write"] }
"#;
    let current = std::fs::read_to_string(config.path().join("integration.toml"))?;
    write_config(config.path(), &(current + added))?;
    hookyard_testkit::wait_for(PATIENCE, "the router to reload its routes", || {
        let n = reloads(&project);
        async move { n > reloads_before }
    })
    .await?;
    project.with_file("tests/compose/worker-refunds.yml");
    project.cmd(&["up", "-d", "--no-build", "--no-deps", "worker-refunds"])?;
    project.wait_healthy(PATIENCE).await?;
    let tally = send_batch(&sender, "refund", &["refund.created"], 30).await;
    let (delivered, duplicates) = partner.wait_delivered(&tally.expected(), PATIENCE).await?;
    let calls = partner.calls().await?;
    for key in tally.expected() {
        if let Some(c) = calls.get(&key) {
            ensure!(
                c[0].path.starts_with("/billing/v1/refunds") && c[0].auth == "bearer",
                "a refund arrived as {:?}",
                c[0]
            );
        }
    }
    let after: Vec<String> = project.identity(&project.all_containers()?)?;
    let untouched = everything_before.iter().all(|c| after.contains(c));
    ensure!(
        untouched,
        "no existing container was restarted:\nbefore {everything_before:?}\nafter {after:?}"
    );
    rows.push(Row {
        phase: "new handler",
        tally,
        delivered,
        duplicates,
    });

    // The account: events sent and acknowledged; deliveries are (event, handler) pairs.
    eprintln!(
        "\n{:<15} {:>5} {:>13} {:>9} {:>10} {:>5} {:>11}",
        "phase", "sent", "acknowledged", "expected", "delivered", "lost", "duplicates"
    );
    for row in &rows {
        eprintln!(
            "{:<15} {:>5} {:>13} {:>9} {:>10} {:>5} {:>11}",
            row.phase,
            row.tally.sent,
            row.tally.accepted.len(),
            row.tally.expected().len(),
            row.delivered,
            lost(row),
            row.duplicates
        );
    }
    let secs = |s: Option<f64>| s.map_or("never".to_owned(), |s| format!("{s:.1}s"));
    eprintln!(
        "nats restart: {} requests refused with 503 + Retry-After; senders saw an outage of {}; \
         first 202 {} after NATS started again\n",
        rows[3].tally.unavailable,
        secs(outage),
        secs(recovery)
    );
    for row in &rows {
        ensure!(
            lost(row) == 0,
            "{}: {} acknowledged deliveries lost",
            row.phase,
            lost(row)
        );
        ensure!(
            row.tally.other.is_empty(),
            "{}: unexpected answers {:?}",
            row.phase,
            row.tally.other
        );
    }

    // No secret of the stack in any container's log: the demo's client secret and basic
    // password, the shop's webhook password, the token key, and the basic credentials as they
    // travel (base64).
    secrets_absent_from_logs(&project)?;

    // 6. down -v leaves nothing behind.
    project.down()?;
    let left = project.leftovers()?;
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

/// Fails when any container's log holds one of the stack's demo secrets.
fn secrets_absent_from_logs(project: &Project) -> anyhow::Result<()> {
    use base64::Engine as _;
    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secrets = [
        "demo-erp-client-secret".to_owned(),
        "demo-carrier-password".to_owned(),
        traffic::SHOP_PASSWORD.to_owned(),
        // The token key of docker-compose.yml, as configured.
        "aG9va3lhcmQtZGVtby1rZXktUkVQTEFDRS1NRSEhISE=".to_owned(),
        encode(&format!("shop:{}", traffic::SHOP_PASSWORD)),
        encode("acme-shop:demo-carrier-password"),
        encode("hookyard:demo-erp-client-secret"),
    ];
    let containers = project.all_containers()?;
    let mut lines = 0;
    for id in &containers {
        let logs = project.logs(id)?;
        lines += logs.lines().count();
        for secret in &secrets {
            ensure!(
                !logs.contains(secret.as_str()),
                "container {id} logged a secret (one of the demo credentials)"
            );
        }
    }
    eprintln!(
        "secrets scan: {} containers, {lines} log lines, none holds any of {} secrets",
        containers.len(),
        secrets.len()
    );
    Ok(())
}
