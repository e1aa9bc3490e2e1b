//! The compose stack on a three-node NATS cluster (`docker-compose.yml` with
//! `docker-compose.cluster.yml`): every stream and bucket has three replicas, one on each node.
//! Two nodes are killed in turn while webhooks arrive, each started again before the next:
//! the node ingress is connected to, with the streams ingress writes to led elsewhere (its
//! client moves to another node), then the leader of the in stream (the other two elect a new
//! one). Nothing ingress acknowledged is lost either time.
//!
//! The nodes publish no port: the test reads their monitoring endpoints (`/varz`, `/connz`,
//! `/jsz`) and asks for a leader's stepdown at the containers' addresses on the compose network.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};

use super::traffic::{Answer, Sender, Tally};
use super::{ONE_STACK, PATIENCE, Row, Run, TYPES, print_rows, project::docker};

const NODES: [&str; 3] = ["nats", "nats-2", "nats-3"];
/// The streams an ingress write goes to: the event and its dedup record, in one batch each.
const INGRESS_WRITES: [&str; 2] = ["HOOKYARD_IN", "KV_HOOKYARD_DEDUP"];
/// Senders at once, so the kill finds requests in flight and the answers after it come close
/// together.
const SENDERS: usize = 4;
/// Longest time from the kill to ingress answering 202 again when the lost node led none of the
/// streams ingress writes to: its NATS client only has to move to another node.
const CLIENT_FAILOVER: Duration = Duration::from_secs(5);
/// The same when the lost node led one of them: nats-server's Raft followers wait 4–9 s without
/// a heartbeat before they elect a new leader (fixed in nats-server, not configurable), and a
/// write to that stream fails meanwhile.
const LEADER_FAILOVER: Duration = Duration::from_secs(12);

// Senders run on worker threads: the phases' docker commands block the test's own thread for
// seconds, and a sender held with them would see its idle connection closed by ingress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_stack_on_a_cluster_loses_a_nats_node_and_no_acknowledged_event()
-> anyhow::Result<()> {
    let _one = ONE_STACK.lock().await;
    let run = Run::up("hookyardcluster", &["docker-compose.cluster.yml"])
        .await
        .context("phase: cluster stack up")?;
    every_stream_on_three_nodes(&run)
        .await
        .context("phase: three replicas")?;
    let (ingress_node, ingress_server) = ingress_node(&run).await?;
    lead_elsewhere(&run, &ingress_server)
        .await
        .context("phase: leaders moved off ingress's node")?;
    let client = node_killed(&run, "node killed", ingress_node)
        .await
        .context("phase: node killed")?;
    let leader = leader_of(&run, INGRESS_WRITES[0]).await?;
    let leader_node = node_named(&run, &leader).await?;
    let lead = node_killed(&run, "leader killed", leader_node)
        .await
        .context("phase: leader killed")?;
    let (rows, failovers): (Vec<Row>, Vec<Failover>) = [client, lead].into_iter().unzip();
    print_rows(&rows);
    for (failover, row) in failovers.iter().zip(&rows) {
        failover.print(&row.tally);
    }
    eprintln!();
    super::nothing_lost_or_unexpected(&run.project, &rows)?;
    for (failover, row) in failovers.iter().zip(&rows) {
        ensure!(
            row.tally.unavailable_without_retry_after == 0,
            "every 503 carries Retry-After: {:?}",
            row.tally
        );
        failover.within_its_limit()?;
    }
    ensure!(
        failovers[0].led.is_empty() && failovers[1].led.contains(&INGRESS_WRITES[0].to_owned()),
        "the first kill took ingress's node only, the second the in stream's leader"
    );
    super::secrets_absent_from_logs(&run.project)?;
    run.project.down()?;
    let left = run.project.leftovers()?;
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

/// The monitoring endpoint of a NATS node, at its container's address.
fn monitor(run: &Run, node: &str) -> anyhow::Result<String> {
    let id = run
        .project
        .containers(node)?
        .into_iter()
        .next()
        .with_context(|| format!("no running container of {node}"))?;
    let ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &id,
    ])?;
    Ok(format!("http://{ip}:8222"))
}

async fn get_json(url: &str) -> anyhow::Result<serde_json::Value> {
    let answer = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    Ok(answer.error_for_status()?.json().await?)
}

/// hookyard's streams (buckets are streams too) as `node` sees them, with their config and
/// cluster placement.
async fn streams(run: &Run, node: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let url = format!("{}/jsz?streams=true&config=true", monitor(run, node)?);
    let jsz = get_json(&url).await?;
    Ok(jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|account| {
            account["stream_detail"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("HOOKYARD_") || n.starts_with("KV_HOOKYARD_"))
        })
        .collect())
}

/// Every stream and bucket the services created has three replicas, and each node holds one:
/// a node's `/jsz` lists the streams it has a replica of.
async fn every_stream_on_three_nodes(run: &Run) -> anyhow::Result<()> {
    let mut held = Vec::new();
    for node in NODES {
        let mut names = Vec::new();
        for stream in streams(run, node).await? {
            ensure!(
                stream["config"]["num_replicas"] == 3,
                "{} on {node} has three replicas: {}",
                stream["name"],
                stream["config"]
            );
            names.extend(stream["name"].as_str().map(str::to_owned));
        }
        names.sort();
        held.push(names);
    }
    for needed in ["HOOKYARD_IN", "KV_HOOKYARD_DEDUP", "HOOKYARD_WORK"] {
        ensure!(
            held[0].iter().any(|n| n == needed),
            "{needed} among {:?}",
            held[0]
        );
    }
    ensure!(
        held.iter().all(|names| *names == held[0]),
        "every node holds every stream: {held:?}"
    );
    eprintln!(
        "{} streams and buckets, each with three replicas, one on every node",
        held[0].len()
    );
    Ok(())
}

/// The node whose clients include ingress's NATS connection, and its server name.
async fn ingress_node(run: &Run) -> anyhow::Result<(&'static str, String)> {
    for node in NODES {
        let base = monitor(run, node)?;
        let connz = get_json(&format!("{base}/connz?limit=4096")).await?;
        let has_ingress = connz["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["name"] == "hookyard-ingress");
        if has_ingress {
            return Ok((node, server_name(run, node).await?));
        }
    }
    anyhow::bail!("no node has a client named hookyard-ingress")
}

/// The `server_name` a node runs under (nats-1 for the service `nats`).
async fn server_name(run: &Run, node: &str) -> anyhow::Result<String> {
    let varz = get_json(&format!("{}/varz", monitor(run, node)?)).await?;
    varz["server_name"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no server_name in {node}'s /varz"))
}

/// The service of the node running as `server`.
async fn node_named(run: &Run, server: &str) -> anyhow::Result<&'static str> {
    for node in NODES {
        if server_name(run, node).await? == server {
            return Ok(node);
        }
    }
    anyhow::bail!("no node runs as {server}")
}

/// The server name of `stream`'s leader, as the first node that knows one sees it.
async fn leader_of(run: &Run, stream: &str) -> anyhow::Result<String> {
    for node in NODES {
        let leader = streams(run, node)
            .await?
            .into_iter()
            .find(|s| s["name"] == stream)
            .and_then(|s| s["cluster"]["leader"].as_str().map(str::to_owned));
        if let Some(leader) = leader {
            return Ok(leader);
        }
    }
    anyhow::bail!("{stream} has no leader")
}

/// The streams of an ingress write that `server` leads.
async fn led_by(run: &Run, server: &str) -> anyhow::Result<Vec<String>> {
    let mut led = Vec::new();
    for stream in INGRESS_WRITES {
        if leader_of(run, stream).await? == server {
            led.push(stream.to_owned());
        }
    }
    Ok(led)
}

/// Moves the leadership of every stream of an ingress write that `server` leads to another
/// node: the leader steps down and hands over to a current follower.
async fn lead_elsewhere(run: &Run, server: &str) -> anyhow::Result<()> {
    // Any node answers the JetStream API for the whole cluster.
    let url = monitor(run, NODES[0])?
        .replace("http://", "nats://")
        .replace(":8222", ":4222");
    let nats = async_nats::connect(url).await?;
    for stream in led_by(run, server).await? {
        let answer = nats
            .request(
                format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
                "".into(),
            )
            .await?;
        let answer: serde_json::Value = serde_json::from_slice(&answer.payload)?;
        ensure!(answer["success"] == true, "stepdown of {stream}: {answer}");
        hookyard_testkit::wait_for(PATIENCE, "a new leader on another node", || async {
            leader_of(run, &stream).await.is_ok_and(|l| l != server)
        })
        .await?;
    }
    Ok(())
}

/// One answer of ingress, with when its request went out and when the answer came.
type Timed = (Instant, Instant, Answer);

/// What the senders saw of losing a node.
struct Failover {
    /// The phase, in the account.
    phase: &'static str,
    /// The killed node's server name.
    victim: String,
    /// Whether ingress was connected to it.
    ingress_was_on_it: bool,
    /// The streams of an ingress write it led.
    led: Vec<String>,
    /// From the kill to the first 202 answered to a request sent after it.
    first_ok: Option<Duration>,
    /// The longest time between two 202s while the senders ran.
    longest_gap: Duration,
}

impl Failover {
    fn of(
        (phase, victim, ingress_was_on_it, led): (&'static str, String, bool, Vec<String>),
        answers: &[Timed],
        killed_at: Instant,
    ) -> Self {
        let first_ok = answers
            .iter()
            .filter(|(sent, _, a)| *sent >= killed_at && super::is_ok(a))
            .map(|(_, answered, _)| answered.duration_since(killed_at))
            .min();
        let mut oks: Vec<Instant> = answers
            .iter()
            .filter(|(_, _, a)| super::is_ok(a))
            .map(|(_, answered, _)| *answered)
            .collect();
        oks.sort();
        let longest_gap = oks
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .max()
            .unwrap_or_default();
        Self {
            phase,
            victim,
            ingress_was_on_it,
            led,
            first_ok,
            longest_gap,
        }
    }

    fn limit(&self) -> Duration {
        if self.led.is_empty() {
            CLIENT_FAILOVER
        } else {
            LEADER_FAILOVER
        }
    }

    fn within_its_limit(&self) -> anyhow::Result<()> {
        ensure!(
            self.first_ok.is_some_and(|t| t <= self.limit()),
            "ingress answered 202 again {:?} after {} was killed (leading {:?}); limit {:?}",
            self.first_ok,
            self.victim,
            self.led,
            self.limit()
        );
        Ok(())
    }

    fn print(&self, tally: &Tally) {
        let led = if self.led.is_empty() {
            "leading none of the streams ingress writes to".to_owned()
        } else {
            format!("the leader of {}", self.led.join(" and "))
        };
        let whose = if self.ingress_was_on_it {
            "ingress's node"
        } else {
            "not ingress's node"
        };
        let first_ok = self
            .first_ok
            .map_or("never".to_owned(), |t| format!("{:.1}s", t.as_secs_f64()));
        eprintln!(
            "{}: killed {} ({whose}, {led}); {} requests refused with 503 + Retry-After; first \
             202 {first_ok} after the kill (limit {}s); longest time without a 202 {:.1}s",
            self.phase,
            self.victim,
            tally.unavailable,
            self.limit().as_secs(),
            self.longest_gap.as_secs_f64()
        );
    }
}

/// Sends mixed webhooks under `tag` until `stop`, recording each answer and its times.
async fn send_until(
    sender: Arc<Sender>,
    tag: String,
    answers: Arc<Mutex<Vec<Timed>>>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let (answered, a) = sender.send(&tag, TYPES[n % 3], n).await;
        n += 1;
        let pause = !super::is_ok(&a);
        if let Ok(mut v) = answers.lock() {
            v.push((sent, answered, a));
        }
        if pause {
            // Pace retries of a refused sender; the failover itself is awaited by the phase.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Kills `node` while webhooks arrive, keeps sending until ingress answered 202 to 100
/// requests sent after the kill, starts the node again and waits until it caught up (healthy),
/// then counts the deliveries.
async fn node_killed(
    run: &Run,
    phase: &'static str,
    node: &'static str,
) -> anyhow::Result<(Row, Failover)> {
    let server = server_name(run, node).await?;
    let ingress_was_on_it = ingress_node(run).await?.0 == node;
    let led = led_by(run, &server).await?;
    let victim = run
        .project
        .containers(node)?
        .into_iter()
        .next()
        .with_context(|| format!("no container of {node}"))?;
    let answers = Arc::new(Mutex::new(Vec::<Timed>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|k| {
            tokio::spawn(send_until(
                run.sender.clone(),
                format!("{}{k}", phase.replace(['\'', ' '], "")),
                answers.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let oks_sent_after = |from: Instant| {
        answers
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(sent, _, a)| *sent >= from && super::is_ok(a))
                    .count()
            })
            .unwrap_or(0)
    };
    let before = Instant::now();
    let killed = async {
        hookyard_testkit::wait_for(PATIENCE, "traffic before the kill", || async {
            oks_sent_after(before) >= 40
        })
        .await?;
        docker(&["kill", &victim])?;
        let killed_at = Instant::now();
        hookyard_testkit::wait_for(PATIENCE, "202s after the kill", || async {
            oks_sent_after(killed_at) >= 100
        })
        .await
        .map(|()| killed_at)
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await?;
    }
    let killed_at = killed?;
    let answers = answers
        .lock()
        .map(|v| v.clone())
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let failover = Failover::of((phase, server, ingress_was_on_it, led), &answers, killed_at);
    // A killed container counts as stopped by hand, so it stays down until started.
    run.project.cmd(&["start", node])?;
    run.project.wait_healthy(PATIENCE).await?;
    let mut tally = Tally::default();
    for (_, _, a) in answers {
        tally.record(a);
    }
    Ok((run.row(phase, tally).await?, failover))
}
