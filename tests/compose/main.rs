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
//! A second test runs the same stack on a three-node NATS cluster (`docker-compose.cluster.yml`)
//! and kills the node ingress is connected to under load ([`cluster`]).
//!
//! Needs the images `hookyard:<version>` and `hookyard-nats:<version>`: `docker compose build`,
//! or offline `bash deploy/images/build-host.sh` (what `scripts/test.sh` and CI do).

mod cluster;
mod project;
mod traffic;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use hookyard_testkit::free_ports;
use project::{Project, docker};
use traffic::{Answer, Partner, Sender, Tally};

const PATIENCE: Duration = Duration::from_secs(120);
/// The stack's per-handler cap in the work queue, small so the stalled-handler phase reaches it.
const WORK_MAX_PER_HANDLER: usize = 50;
const TYPES: [&str; 3] = ["order.created", "order.cancelled", "shipment.updated"];

/// Held by each test for its whole run: the tests of this binary run at once, and two stacks
/// side by side would share the machine and blur each other's timings.
static ONE_STACK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

/// The running stack and the two ends the test sees of it.
struct Run {
    project: Project,
    config: tempfile::TempDir,
    sender: Arc<Sender>,
    partner: Partner,
    admin_port: u16,
}

impl Run {
    /// Brings the stack of `docker-compose.yml` and the override `files` up from nothing, as
    /// project `<prefix><pid>`, and waits until every service is healthy.
    async fn up(prefix: &str, files: &[&str]) -> anyhow::Result<Self> {
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
        let [ingress_port, demo_port, consent_port, admin_port] = free_ports()?;
        let name = format!("{prefix}{}", std::process::id());
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
                (
                    "HOOKYARD_WORK_MAX_PER_HANDLER".into(),
                    WORK_MAX_PER_HANDLER.to_string(),
                ),
            ],
        );
        for file in files {
            project.with_file(file);
        }
        let started = Instant::now();
        project.cmd(&["up", "-d", "--no-build"])?;
        project.wait_healthy(PATIENCE).await?;
        eprintln!(
            "stack healthy after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        admin_answers_with_the_demo_token_only(admin_port).await?;
        Ok(Self {
            project,
            config,
            sender: Arc::new(Sender::new(ingress_port)),
            partner: Partner::new(demo_port),
            admin_port,
        })
    }

    /// A row of the account once every expected delivery of `tally` arrived (or the patience
    /// ran out).
    async fn row(&self, phase: &'static str, tally: Tally) -> anyhow::Result<Row> {
        self.row_within(phase, tally, PATIENCE).await
    }

    async fn row_within(
        &self,
        phase: &'static str,
        tally: Tally,
        patience: Duration,
    ) -> anyhow::Result<Row> {
        let (delivered, duplicates) = self
            .partner
            .wait_delivered(&tally.expected(), patience)
            .await?;
        Ok(Row {
            phase,
            tally,
            delivered,
            duplicates,
        })
    }
}

// Senders run on worker threads: the phases' docker commands block the test's own thread for
// seconds, and a sender held with them would see its idle connection closed by ingress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_stack_delivers_scales_survives_and_cleans_up() -> anyhow::Result<()> {
    let _one = ONE_STACK.lock().await;
    let mut run = Run::up("hookyardtest", &[])
        .await
        .context("phase: stack up")?;
    let mut rows = vec![mixed_types(&run).await.context("phase: mixed types")?];
    let (scaled, replicas) = scaled(&run).await.context("phase: scaled x3")?;
    rows.push(scaled);
    rows.push(
        replica_killed(&run, &replicas[1])
            .await
            .context("phase: replica killed")?,
    );
    let (restarted, outage) = nats_restarted(&run)
        .await
        .context("phase: nats restarted")?;
    rows.push(restarted);
    rows.push(new_handler(&mut run).await.context("phase: new handler")?);
    rows.extend(handler_stalled(&run).await.context("phase: stalled")?);
    print_account(&rows, &outage);
    nothing_lost_or_unexpected(&run.project, &rows)?;
    // No secret of the stack in any container's log: the demo's client secret and basic
    // password, the shop's webhook password, the token key, and the basic credentials as they
    // travel (base64).
    secrets_absent_from_logs(&run.project)?;
    // down -v leaves nothing behind.
    run.project.down().context("phase: down -v")?;
    let left = run.project.leftovers()?;
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

/// Every acknowledged delivery of every row arrived, and ingress gave no answer but 202 and
/// 503 + Retry-After.
fn nothing_lost_or_unexpected(project: &Project, rows: &[Row]) -> anyhow::Result<()> {
    for row in rows {
        ensure!(
            lost(row) == 0,
            "{}: {} acknowledged deliveries lost",
            row.phase,
            lost(row)
        );
        ensure!(
            row.tally.other.is_empty(),
            "{}: unexpected answers {:?}{}",
            row.phase,
            row.tally.other,
            project.describe("ingress", 40)
        );
    }
    Ok(())
}

/// Phase 1: 200 mixed webhooks delivered exactly as routed, each through its connection.
async fn mixed_types(run: &Run) -> anyhow::Result<Row> {
    let tally = send_batch(&run.sender, "mixed", &TYPES, 200).await;
    ensure!(
        tally.accepted.len() == 200,
        "all 200 accepted: {:?}",
        tally.other
    );
    let row = run.row("mixed types", tally).await?;
    let calls = run.partner.calls().await?;
    for (id, t) in &row.tally.accepted {
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
    Ok(row)
}

/// Phase 2: scale worker-orders to 3; the replicas share the load, worker-shipments is
/// untouched.
/// Returns the row and the replicas' container ids.
async fn scaled(run: &Run) -> anyhow::Result<(Row, Vec<String>)> {
    let project = &run.project;
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
    let tally = send_batch(&run.sender, "scaled", &["order.created"], 150).await;
    let row = run.row("scaled x3", tally).await?;
    let per_replica = shares(project, &replicas, &row.tally)?;
    eprintln!(
        "worker-orders replicas handled {per_replica:?} of {} events",
        row.tally.accepted.len()
    );
    ensure!(
        per_replica.iter().all(|n| *n > 0),
        "every replica handles some: {per_replica:?}"
    );
    ensure!(
        project.identity(&project.containers("worker-shipments")?)? == shipments_before,
        "worker-shipments was not restarted or recreated"
    );
    Ok((row, replicas))
}

/// How many of `tally`'s events each replica handled, checking that no event was processed by
/// two replicas without a redelivery.
fn shares(project: &Project, replicas: &[String], tally: &Tally) -> anyhow::Result<Vec<usize>> {
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
    Ok(per_replica)
}

/// Phase 3: kill a worker replica while events are in flight; nothing acknowledged is lost.
async fn replica_killed(run: &Run, victim: &str) -> anyhow::Result<Row> {
    let tally_kill = Arc::new(Mutex::new(Tally::default()));
    let load = {
        let (sender, tally) = (run.sender.clone(), tally_kill.clone());
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
    docker(&["kill", victim])?;
    load.await?;
    let tally = tally_kill
        .lock()
        .map(|t| t.clone())
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let row = run.row("replica killed", tally).await?;
    // The killed replica stays exited (a killed container counts as stopped by hand); remove it
    // so the health checks below look at the running stack.
    docker(&["rm", "-f", victim])?;
    Ok(row)
}

/// What the senders saw of the NATS restart.
struct Outage {
    /// From the first 503 to the first 202 after NATS came back.
    seen: Option<f64>,
    /// From NATS starting again to the first 202.
    recovery: Option<f64>,
}

fn is_ok(a: &Answer) -> bool {
    matches!(a, Answer::Accepted { .. })
}

fn is_503(a: &Answer) -> bool {
    matches!(a, Answer::Unavailable { .. })
}

/// Phase 4: restart NATS while webhooks are sent; 503 + Retry-After during, 202 after, none
/// lost.
async fn nats_restarted(run: &Run) -> anyhow::Result<(Row, Outage)> {
    let answers = Arc::new(Mutex::new(Vec::<(Instant, Answer)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(send_until(
        run.sender.clone(),
        answers.clone(),
        stop.clone(),
    ));
    let count = |f: fn(&Answer) -> bool| {
        answers
            .lock()
            .map(|v| v.iter().filter(|(_, a)| f(a)).count())
            .unwrap_or(0)
    };
    hookyard_testkit::wait_for(PATIENCE, "traffic before the restart", || async {
        count(is_ok) >= 20
    })
    .await?;
    run.project.cmd(&["stop", "-t", "5", "nats"])?;
    let stopped_at = Instant::now();
    hookyard_testkit::wait_for(PATIENCE, "503s while NATS is down", || async {
        count(is_503) >= 3
    })
    .await?;
    run.project.cmd(&["start", "nats"])?;
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
    let outage = outage_of(&answers, stopped_at, started_at);
    let mut tally = Tally::default();
    for (_, a) in answers {
        tally.record(a);
    }
    ensure!(
        tally.unavailable > 0 && tally.unavailable_without_retry_after == 0,
        "503s with Retry-After: {tally:?}"
    );
    Ok((run.row("nats restarted", tally).await?, outage))
}

/// Sends mixed webhooks until `stop`, recording each answer and when it came.
async fn send_until(
    sender: Arc<Sender>,
    answers: Arc<Mutex<Vec<(Instant, Answer)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
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
            // Pace retries of a refused sender; the outage itself is awaited by the phase.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn outage_of(answers: &[(Instant, Answer)], stopped_at: Instant, started_at: Instant) -> Outage {
    let first_after = |from: Instant, f: fn(&Answer) -> bool| {
        answers
            .iter()
            .find(|(at, a)| *at >= from && f(a))
            .map(|(at, _)| *at)
    };
    let first_refusal = first_after(stopped_at, is_503);
    let first_ok = first_after(started_at, is_ok);
    Outage {
        seen: first_refusal
            .zip(first_ok)
            .map(|(a, b)| b.duration_since(a).as_secs_f64()),
        recovery: first_ok.map(|t| t.duration_since(started_at).as_secs_f64()),
    }
}

/// The handler and connection phase 5 adds to the running stack's file.
const REFUNDS: &str = r#"
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

/// Phase 5: a new handler on a new OAuth 2.0 connection: both added to the file, the handler's
/// worker started as a new service; egress and the token service pick the connection up from
/// the file, and nothing else is restarted.
async fn new_handler(run: &mut Run) -> anyhow::Result<Row> {
    let everything_before = run.project.identity(&run.project.all_containers()?)?;
    let router = run.project.containers("router")?;
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
    let reloads_before = reloads(&run.project);
    let current = std::fs::read_to_string(run.config.path().join("integration.toml"))?;
    write_config(run.config.path(), &(current + REFUNDS))?;
    hookyard_testkit::wait_for(PATIENCE, "the router to reload its routes", || {
        let n = reloads(&run.project);
        async move { n > reloads_before }
    })
    .await?;
    run.project.with_file("tests/compose/worker-refunds.yml");
    run.project
        .cmd(&["up", "-d", "--no-build", "--no-deps", "worker-refunds"])?;
    run.project.wait_healthy(PATIENCE).await?;
    let tally = send_batch(&run.sender, "refund", &["refund.created"], 30).await;
    let row = run.row("new handler", tally).await?;
    let calls = run.partner.calls().await?;
    for key in row.tally.expected() {
        if let Some(c) = calls.get(&key) {
            ensure!(
                c[0].path.starts_with("/billing/v1/refunds") && c[0].auth == "bearer",
                "a refund arrived as {:?}",
                c[0]
            );
        }
    }
    let after: Vec<String> = run.project.identity(&run.project.all_containers()?)?;
    let untouched = everything_before.iter().all(|c| after.contains(c));
    ensure!(
        untouched,
        "no existing container was restarted:\nbefore {everything_before:?}\nafter {after:?}"
    );
    Ok(row)
}

/// Phase 6: worker-shipments stopped while 1,000 orders and 200 shipments arrive. Shipments
/// reaches its cap in the work queue and its items wait; every order is delivered meanwhile.
/// Once worker-shipments is back, every shipment is delivered too.
async fn handler_stalled(run: &Run) -> anyhow::Result<[Row; 2]> {
    let project = &run.project;
    project.cmd(&["stop", "-t", "10", "worker-shipments"])?;
    let mix = ["order.created"; 5]
        .into_iter()
        .chain(["shipment.updated"])
        .collect::<Vec<_>>();
    let tally = send_batch(&run.sender, "stall", &mix, 1_200).await;
    let (shipments, orders) = tally.split(|t| t == "shipment.updated");
    ensure!(
        orders.accepted.len() == 1_000 && shipments.accepted.len() == 200,
        "1,000 orders and 200 shipments accepted: {:?}",
        tally.other
    );
    let orders = run
        .row_within("stalled: orders", orders, 3 * PATIENCE)
        .await?;
    // The operator sees why: the admin API's handler view and the router's log.
    let status = handler_status(run, "shipments").await?;
    // A uint64 is a string in protobuf's JSON mapping.
    let waiting = status["waiting"]
        .as_str()
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or(0);
    ensure!(
        waiting > 0,
        "shipments' items wait beyond its cap of {WORK_MAX_PER_HANDLER}: {status}"
    );
    let router_logs = project
        .containers("router")?
        .iter()
        .map(|id| project.logs(id))
        .collect::<anyhow::Result<String>>()?;
    ensure!(
        router_logs.contains("handler at its cap"),
        "the router logged that shipments is at its cap"
    );
    eprintln!("worker-shipments stopped: {waiting} shipment items waiting, all orders delivered");
    project.cmd(&["start", "worker-shipments"])?;
    project.wait_healthy(PATIENCE).await?;
    let shipments = run
        .row_within("stalled: resumed", shipments, 3 * PATIENCE)
        .await?;
    Ok([orders, shipments])
}

/// One handler's status from the admin API (with the demo token).
async fn handler_status(run: &Run, name: &str) -> anyhow::Result<serde_json::Value> {
    let token = std::fs::read_to_string(root().join("examples/compose/admin-token"))?;
    let url = format!("http://127.0.0.1:{}/v1/handlers", run.admin_port);
    let answer: serde_json::Value = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token.trim())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    answer["handlers"]
        .as_array()
        .and_then(|all| all.iter().find(|h| h["name"] == name))
        .cloned()
        .with_context(|| format!("no handler {name} in {answer}"))
}

/// The account: events sent and acknowledged; deliveries are (event, handler) pairs.
fn print_account(rows: &[Row], outage: &Outage) {
    print_rows(rows);
    let secs = |s: Option<f64>| s.map_or("never".to_owned(), |s| format!("{s:.1}s"));
    let refused = rows
        .iter()
        .find(|r| r.phase == "nats restarted")
        .map_or(0, |r| r.tally.unavailable);
    eprintln!(
        "nats restart: {refused} requests refused with 503 + Retry-After; senders saw an outage \
         of {}; first 202 {} after NATS started again\n",
        secs(outage.seen),
        secs(outage.recovery)
    );
}

/// The table of rows: events sent and acknowledged; deliveries are (event, handler) pairs.
fn print_rows(rows: &[Row]) {
    eprintln!(
        "\n{:<15} {:>5} {:>13} {:>9} {:>10} {:>5} {:>11}",
        "phase", "sent", "acknowledged", "expected", "delivered", "lost", "duplicates"
    );
    for row in rows {
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
