//! `hookyard-bench`: the benchmark suite (docs/benchmarks.md), on loopback only, bounded in time.
//!
//! It starts nats-server (from `--nats-server`, else copied out of the local `nats:<version>`
//! image) in each durability mode, the real `hookyard-ingress` binary three times (group commit,
//! `--batch-max 1`, and group commit with every request traced to an OTLP sink), and two floor
//! servers (itself, `floor-server`); every process it starts is
//! killed by pid when the run ends or fails. Then, repeating every measurement and
//! interleaving the systems (A B A B …), it measures W1 ingress accept at closed-loop
//! concurrencies and fixed offered rates against the floors (bare HTTP 202, naive
//! HTTP + one publish, raw JetStream one-by-one and batched at the same in-flight count),
//! CPU seconds per 1000 events from `/proc/<pid>/stat`, idle and peak RSS, and overload
//! (10× capacity offered). It writes a JSON file and prints a table with the ratios.
//!
//! Then it measures subprocess steps (see `subprocess`): one Python 3 program run by the
//! worker's own runner as a process per event and as a pool of long-lived processes.
//!
//! Then the end-to-end part (see `e2e`): for each NATS topology (one server, and a three-node
//! cluster with three replicas of every stream) and durability mode, the real ingress, router,
//! worker and egress binaries deliver to a loopback partner sink in the bench. It measures W1
//! ingress alone on that topology, W2 (closed-loop delivered/s, then fixed offered rates;
//! latency from ingress's 2xx to the sink's receipt, lost, duplicates, CPU over every process),
//! W3 (a backlog accepted with the worker stopped, then drained), memory of every process, and
//! r3 / single.
//!
//! `--smoke` runs a ~40 s version and exits non-zero when something is broken (not on speed):
//! an event lost, nothing delivered, a part failing.
//! `--only ingress`, `--only subprocess` or `--only e2e` runs one part.
//! `fast-batch-probe` measures whether JetStream batch publishing (atomic, and ADR-50 fast
//! batches) groups fsyncs under `sync_interval: always` (see `probe`).
//! Not measured yet: OAuth (token service) on the delivery path, subprocess steps inside the
//! pipeline, and a partner that is slow or failing.

mod e2e;
mod e2e_table;
mod floors;
mod load;
mod overload;
mod pipeline;
mod probe;
mod procs;
mod report;
mod sink;
mod subprocess;
mod suite;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::{
    procs::{Mode, Topology},
    report::System,
};

#[derive(Debug, Parser)]
#[command(
    name = "hookyard-bench",
    about = "hookyard's benchmark suite (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// A ~10 s check that every part runs; exits 1 when something is broken.
    #[arg(long)]
    smoke: bool,
    /// Repetitions of every measurement.
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Closed-loop concurrencies (in-flight requests or publishes).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    concurrency: Vec<usize>,
    /// Body sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "1024,65536")]
    bodies: Vec<usize>,
    /// Offered rates, as fractions of ingress's capacity at the highest concurrency.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.8")]
    rates: Vec<f64>,
    /// Seconds of overload (10× capacity offered); 0 skips it.
    #[arg(long, default_value_t = 10.0)]
    overload_seconds: f64,
    /// Durability modes: `always` (sync_interval: always) and/or `default`.
    #[arg(long, value_delimiter = ',', default_value = "always,default")]
    modes: Vec<String>,
    /// nats-server binary (default: copied out of the local nats:<version> image).
    #[arg(long)]
    nats_server: Option<PathBuf>,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Runs one part only (default: all).
    #[arg(long, value_enum)]
    only: Option<Part>,
    /// End to end: NATS topologies, `single` and/or `r3` (a three-node cluster, three replicas).
    #[arg(long, value_delimiter = ',', default_value = "single,r3")]
    topology: Vec<String>,
    /// End to end: closed-loop concurrency (in-flight webhooks) of W1 on each topology, W2 and
    /// the filling of the W3 backlog.
    #[arg(long, default_value_t = 256)]
    e2e_concurrency: usize,
    /// End to end: events in the W3 backlog.
    #[arg(long, default_value_t = 100_000)]
    drain_events: u64,
    /// End to end: seconds to wait for the pipeline to deliver what it accepted, per run.
    #[arg(long, default_value_t = 300.0)]
    drain_limit: f64,
    /// Subprocess steps: events in flight (oneshot: processes at once; persistent: the pool's
    /// processes).
    #[arg(long, default_value_t = 8)]
    subprocess_concurrency: usize,
    /// Subprocess steps: events per measurement, instead of `--seconds`.
    #[arg(long)]
    subprocess_events: Option<u64>,
    /// Subprocess steps: event body size in bytes.
    #[arg(long, default_value_t = 1024)]
    subprocess_body: usize,
    /// Subprocess steps: the Python 3 interpreter (default `python3` on PATH; the program runs
    /// with its `sys.executable`).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Subprocess steps: an interpreter flag before the script, e.g. `--python-arg=-S` (no
    /// `site`: what a start costs without site-packages' `.pth` files); repeatable.
    #[arg(long, allow_hyphen_values = true)]
    python_arg: Vec<String>,
}

/// The parts of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// W1 ingress accept against its floors, overload and memory (starts NATS and ingress).
    Ingress,
    /// Subprocess step throughput, a process per event against persistent processes.
    Subprocess,
    /// W2 end to end and W3 backlog drain through ingress, router, worker and egress, and W1
    /// ingress, on each NATS topology.
    E2e,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a floor server (used by the suite itself).
    FloorServer {
        #[arg(long, value_enum)]
        kind: floors::FloorKind,
        #[arg(long)]
        nats_url: Option<String>,
        #[arg(long)]
        subject: String,
    },
    /// Measures whether JetStream batch publishing groups fsyncs under `sync_interval: always`:
    /// one-by-one, atomic-batch and fast-batch publishing, each against a fresh nats-server.
    FastBatchProbe {
        /// Messages per way.
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Message size in bytes.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Messages per batch.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Messages outstanding (one-by-one: concurrent publishes; batches: in_flight / batch
        /// batches at a time).
        #[arg(long, default_value_t = 256)]
        in_flight: usize,
        /// Count the server's fsync/fdatasync calls with `strace -c` (needs strace).
        #[arg(long)]
        strace: bool,
    },
}

#[derive(Serialize)]
struct Results {
    machine: Machine,
    nats_version: &'static str,
    records: Vec<report::Record>,
    summaries: Vec<report::Summary>,
    ratios: Vec<report::Ratio>,
    overload: Vec<overload::Overload>,
    memory: Vec<suite::Memory>,
    /// `null` when the subprocess part did not run.
    subprocess: Option<subprocess::Report>,
    /// `null` when the end-to-end part did not run.
    e2e: Option<e2e::Report>,
}

/// What the ingress part found (all empty when it did not run).
#[derive(Default)]
struct IngressResults {
    records: Vec<report::Record>,
    summaries: Vec<report::Summary>,
    ratios: Vec<report::Ratio>,
    overload: Vec<overload::Overload>,
    memory: Vec<suite::Memory>,
}

#[derive(Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    memory: String,
    kernel: String,
    load_before: String,
    load_after: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn machine(load_before: String) -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    Machine {
        cpu: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default(),
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        memory: read("/proc/meminfo")
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        load_before,
        load_after: read("/proc/loadavg").trim().to_owned(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hookyard-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::FloorServer {
        kind,
        nats_url,
        subject,
    }) = cli.command
    {
        return match runtime.block_on(floors::serve(kind, nats_url, subject)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("floor server: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::FastBatchProbe {
        messages,
        size,
        batch,
        in_flight,
        strace,
    }) = cli.command
    {
        let plan = probe::Plan {
            messages,
            size,
            batch,
            in_flight,
            strace,
        };
        let outcome = runtime.block_on(async {
            let dir = std::env::temp_dir().join(format!("hookyard-probe-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let binary = procs::nats_binary(cli.nats_server.clone(), &dir)?;
            let outcome = probe::run(&plan, &binary, &dir).await;
            let _ = std::fs::remove_dir_all(&dir);
            outcome
        });
        return match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("fast-batch-probe: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    // On SIGINT or SIGTERM the suite is dropped, which kills every process it started.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(cli) => outcome,
            () = stopped() => Err(anyhow::anyhow!("stopped by a signal")),
        }
    });
    match outcome {
        Ok(problems) if problems.is_empty() => ExitCode::SUCCESS,
        Ok(problems) => {
            for problem in problems {
                eprintln!("hookyard-bench: broken: {problem}");
            }
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("hookyard-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs the suite; returns what is broken (smoke checks).
async fn run(cli: Cli) -> anyhow::Result<Vec<String>> {
    let load_before = read("/proc/loadavg").trim().to_owned();
    let dir = std::env::temp_dir().join(format!("hookyard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut problems = Vec::new();
    let ingress = if runs(&cli, Part::Ingress) {
        let ingress = run_ingress(&cli, &dir).await?;
        if cli.smoke {
            problems.extend(smoke_problems(&ingress.records, &ingress.overload));
        }
        ingress
    } else {
        IngressResults::default()
    };
    let e2e = if runs(&cli, Part::E2e) {
        let report = run_e2e(&cli, &dir).await?;
        if cli.smoke {
            problems.extend(e2e_table::problems(&report));
        }
        Some(report)
    } else {
        None
    };
    let subprocess = if runs(&cli, Part::Subprocess) {
        eprintln!("hookyard-bench: measuring subprocess steps");
        let report = subprocess::run(&subprocess_plan(&cli), &dir).await?;
        println!("{}", subprocess::table(&report));
        if cli.smoke {
            problems.extend(subprocess::problems(&report));
        }
        Some(report)
    } else {
        None
    };
    let results = Results {
        machine: machine(load_before),
        nats_version: include_str!("../../../deploy/nats/VERSION").trim(),
        records: ingress.records,
        summaries: ingress.summaries,
        ratios: ingress.ratios,
        overload: ingress.overload,
        memory: ingress.memory,
        subprocess,
        e2e,
    };
    if let Some(parent) = cli.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&cli.out, serde_json::to_vec_pretty(&results)?)
        .with_context(|| format!("failed to write {}", cli.out.display()))?;
    eprintln!("hookyard-bench: results in {}", cli.out.display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(problems)
}

/// Whether `part` runs: every part does unless `--only` names another.
fn runs(cli: &Cli, part: Part) -> bool {
    cli.only.is_none_or(|only| only == part)
}

/// Measures the whole pipeline on every topology and mode and prints its tables.
async fn run_e2e(cli: &Cli, dir: &std::path::Path) -> anyhow::Result<e2e::Report> {
    let plan = e2e_plan(cli)?;
    let nats_binary = procs::nats_binary(cli.nats_server.clone(), dir)?;
    let report = e2e::run(&plan, &nats_binary, dir).await?;
    println!("{}", e2e_table::table(&report));
    Ok(report)
}

/// The end-to-end part's plan: from the command line, or the smoke run's (short loads, a
/// backlog of 2000 events, both topologies in the `always` mode).
fn e2e_plan(cli: &Cli) -> anyhow::Result<e2e::Plan> {
    let topologies = cli
        .topology
        .iter()
        .map(|t| match t.as_str() {
            "single" => Ok(Topology::Single),
            "r3" => Ok(Topology::R3),
            other => anyhow::bail!("unknown topology {other:?} (single, r3)"),
        })
        .collect::<anyhow::Result<_>>()?;
    let plan = e2e::Plan {
        repetitions: cli.repetitions.max(1),
        seconds: cli.seconds,
        concurrency: cli.e2e_concurrency.max(1),
        rates: cli.rates.clone(),
        body: cli.bodies.first().copied().unwrap_or(1024),
        drain_events: cli.drain_events.max(1),
        modes: modes(cli)?,
        topologies,
        drain_limit: std::time::Duration::from_secs_f64(cli.drain_limit.max(1.0)),
    };
    Ok(if cli.smoke {
        e2e::Plan {
            repetitions: 1,
            seconds: 0.4,
            rates: vec![0.5],
            body: 1024,
            drain_events: 2000,
            drain_limit: std::time::Duration::from_secs(20),
            ..plan
        }
    } else {
        plan
    })
}

/// The ingress part's plan: from the command line, or the smoke run's.
fn ingress_plan(cli: &Cli) -> suite::Plan {
    if cli.smoke {
        suite::Plan {
            repetitions: 1,
            seconds: 0.4,
            concurrency: vec![1, 16],
            bodies: vec![1024],
            rates: vec![0.5],
            overload_seconds: 1.0,
        }
    } else {
        suite::Plan {
            repetitions: cli.repetitions.max(1),
            seconds: cli.seconds,
            concurrency: cli.concurrency.clone(),
            bodies: cli.bodies.clone(),
            rates: cli.rates.clone(),
            overload_seconds: cli.overload_seconds,
        }
    }
}

/// The subprocess part's plan: from the command line, or the smoke run's (a few events per
/// way, enough to check every answer, too few to time).
fn subprocess_plan(cli: &Cli) -> subprocess::Plan {
    if cli.smoke {
        subprocess::Plan {
            repetitions: 1,
            seconds: 0.0,
            events: Some(16),
            concurrency: 4,
            body_bytes: cli.subprocess_body,
            python: cli.python.clone(),
            python_args: cli.python_arg.clone(),
        }
    } else {
        subprocess::Plan {
            repetitions: cli.repetitions.max(1),
            seconds: cli.seconds,
            events: cli.subprocess_events,
            concurrency: cli.subprocess_concurrency.max(1),
            body_bytes: cli.subprocess_body,
            python: cli.python.clone(),
            python_args: cli.python_arg.clone(),
        }
    }
}

/// The durability modes to measure in (the smoke run: `always` only).
fn modes(cli: &Cli) -> anyhow::Result<Vec<Mode>> {
    if cli.smoke {
        return Ok(vec![Mode::SyncAlways]);
    }
    cli.modes
        .iter()
        .map(|m| match m.as_str() {
            "always" => Ok(Mode::SyncAlways),
            "default" => Ok(Mode::Default),
            other => anyhow::bail!("unknown mode {other:?} (always, default)"),
        })
        .collect()
}

/// Measures ingress against its floors in every mode and prints its tables.
async fn run_ingress(cli: &Cli, dir: &std::path::Path) -> anyhow::Result<IngressResults> {
    let plan = ingress_plan(cli);
    let modes = modes(cli)?;
    let nats_binary = procs::nats_binary(cli.nats_server.clone(), dir)?;
    let mut records = Vec::new();
    let mut overload = Vec::new();
    let mut memory = Vec::new();
    for mode in modes {
        eprintln!("hookyard-bench: measuring with {}", mode.label());
        let results = suite::run_mode(&plan, mode, &nats_binary, dir).await?;
        records.extend(results.records);
        overload.extend(results.overload);
        memory.extend(results.memory);
    }
    let summaries = report::summarize(&records);
    let ratios = report::ratios(&summaries);
    println!("{}", report::table(&summaries, &ratios));
    print_overload_and_memory(&overload, &memory);
    Ok(IngressResults {
        records,
        summaries,
        ratios,
        overload,
        memory,
    })
}

fn print_overload_and_memory(overload: &[overload::Overload], memory: &[suite::Memory]) {
    for o in overload {
        println!(
            "overload ({}): {:.0}/s offered for {:.1} s: {} accepted, {} shed (503/429; {} without Retry-After), {} other, {} connection errors, p99 {:.1} ms, ingress peak RSS {} KiB, recovered in {:.0} ms",
            o.mode.label(),
            o.offered_per_s,
            o.seconds,
            o.accepted,
            o.shed,
            o.shed_without_retry_after,
            o.other,
            o.errors,
            o.p99_ms,
            o.peak_rss_kib,
            o.recovery_ms
        );
    }
    for m in memory {
        println!(
            "memory ({}): {} idle {} KiB, peak {} KiB",
            m.mode.label(),
            m.service,
            m.idle_rss_kib,
            m.peak_rss_kib
        );
    }
}

/// What the smoke run must see: every system accepted something, nothing but 2xx under normal
/// load, nothing accepted was lost, overload shed with Retry-After and recovered.
fn smoke_problems(records: &[report::Record], overload: &[overload::Overload]) -> Vec<String> {
    let mut problems = Vec::new();
    for system in System::ALL {
        if !records.iter().any(|r| r.system == system && r.accepted > 0) {
            problems.push(format!("{} accepted nothing", system.name()));
        }
    }
    for r in records {
        if r.load == "closed" && (r.other > 0 || r.errors > 0 || r.shed > 0) {
            problems.push(format!(
                "{} at c={}: {} shed, {} other statuses, {} errors",
                r.system.name(),
                r.concurrency,
                r.shed,
                r.other,
                r.errors
            ));
        }
        if let Some(lost) = r.lost.filter(|&l| l > 0) {
            problems.push(format!(
                "{}: {lost} accepted events not in the stream",
                r.system.name()
            ));
        }
    }
    for o in overload {
        if o.shed_without_retry_after > 0 || o.other > 0 {
            problems.push(format!(
                "overload: {} shed without Retry-After, {} other statuses",
                o.shed_without_retry_after, o.other
            ));
        }
        if o.recovery_ms > 10_000.0 {
            problems.push(format!(
                "overload: no recovery within {:.0} ms",
                o.recovery_ms
            ));
        }
    }
    problems
}
