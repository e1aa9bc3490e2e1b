//! The end-to-end part: for every NATS topology (`single`, `r3`) and durability mode, the
//! whole pipeline (see [`crate::pipeline`]) is started and measured three ways.
//!
//! - W1 on the topology: ingress alone, closed loop, before the router runs (the events are
//!   purged after), so single node and cluster are compared on the same footing.
//! - W2: closed loop (the maximum delivered/s), then fixed offered rates as fractions of it;
//!   each run waits until the pipeline has nothing left queued, then matches what the sink
//!   received to what ingress accepted: latency from ingress's 2xx to the sink's receipt,
//!   events lost (accepted, yet neither received nor dead-lettered), duplicates.
//! - W3: the worker killed, a backlog accepted and routed, then the worker started: the drain
//!   rate from its start to the last event received.
//!
//! CPU is summed over every process of the pipeline (NATS nodes included, the sink and load
//! generator not); memory is each process's RSS after start and at its peak.

use std::{
    collections::{BTreeMap, HashMap, HashSet, hash_map::Entry},
    path::Path,
    time::Duration,
};

use serde::Serialize;
use tokio::time::Instant;

use crate::{
    load::{self, Bodies, Outcome, Stop},
    pipeline::{NAMESPACE, Pipeline},
    procs::{Mode, Topology},
    sink::{Receipt, Sink},
    suite::{PATH, in_stream, stored},
};

/// What the end-to-end part measures, from the command line.
#[derive(Debug, Clone)]
pub struct Plan {
    pub repetitions: usize,
    pub seconds: f64,
    pub concurrency: usize,
    /// Offered rates, as fractions of the closed-loop delivered/s.
    pub rates: Vec<f64>,
    pub body: usize,
    /// Events in the W3 backlog.
    pub drain_events: u64,
    pub modes: Vec<Mode>,
    pub topologies: Vec<Topology>,
    /// Longest wait for the pipeline to deliver what it accepted.
    pub drain_limit: Duration,
}

/// W1 on one topology: ingress alone at the closed-loop concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct IngressRun {
    pub topology: Topology,
    pub mode: Mode,
    pub concurrency: usize,
    pub repetition: usize,
    pub accepted: u64,
    pub accepted_per_s: f64,
    pub p99_ms: f64,
    /// Accepted but not in `HOOKYARD_IN` afterwards (must be 0).
    pub lost: Option<u64>,
}

/// One W2 or W3 run.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub topology: Topology,
    pub mode: Mode,
    /// `closed` (W2, `concurrency` in flight), `rate` (W2, `offered_per_s`) or `drain` (W3).
    pub load: String,
    pub concurrency: usize,
    /// For `rate`: the fraction of the closed-loop delivered/s offered.
    pub fraction: Option<f64>,
    pub offered_per_s: Option<f64>,
    pub repetition: usize,
    /// Answered 2xx by ingress.
    pub accepted: u64,
    /// Distinct accepted events the sink received.
    pub delivered: u64,
    /// `delivered` over the time from the first request (W3: the worker's start) to the last
    /// receipt.
    pub delivered_per_s: f64,
    pub seconds: f64,
    /// Ingress's 2xx to the sink's receipt, ms (none for W3, where it is the backlog's age).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    /// Accepted, yet after the drain wait neither received nor in `HOOKYARD_DLQ` (must be 0).
    pub lost: u64,
    pub dead_lettered: u64,
    /// Receipts beyond the first of an event.
    pub duplicates: u64,
    /// Events still queued when the drain wait ended (`null`: unknown), part of `lost`.
    pub left_queued: Option<u64>,
    /// CPU seconds per 1000 delivered events, all processes, load and drain.
    pub cpu_s_per_1000: Option<f64>,
}

/// Idle and peak RSS of one process of the pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceMemory {
    pub topology: Topology,
    pub mode: Mode,
    pub service: String,
    /// After start, before any load.
    pub idle_rss_kib: u64,
    pub peak_rss_kib: u64,
}

/// r3 against single for one measure, medians.
#[derive(Debug, Clone, Serialize)]
pub struct TopologyRatio {
    pub mode: Mode,
    pub measure: String,
    pub single: f64,
    pub r3: f64,
    pub r3_over_single: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub ingress: Vec<IngressRun>,
    pub deliveries: Vec<Delivery>,
    pub memory: Vec<ServiceMemory>,
    pub ratios: Vec<TopologyRatio>,
}

/// Runs the part for every topology and mode of `plan`.
pub async fn run(plan: &Plan, nats_binary: &Path, dir: &Path) -> anyhow::Result<Report> {
    let sink = Sink::start().await?;
    let mut report = Report::default();
    for &topology in &plan.topologies {
        for &mode in &plan.modes {
            eprintln!(
                "hookyard-bench: end to end on {} with {}",
                topology.label(),
                mode.label()
            );
            let pipeline = Pipeline::start(nats_binary, dir, mode, topology, sink.addr).await?;
            let mut run = Run {
                plan,
                topology,
                mode,
                sink: &sink,
                pipeline,
                memory: BTreeMap::new(),
            };
            run.all(&mut report).await?;
        }
    }
    report.ratios = ratios(&report);
    Ok(report)
}

/// One topology and mode: the pipeline and what has been seen of its memory.
struct Run<'a> {
    plan: &'a Plan,
    topology: Topology,
    mode: Mode,
    sink: &'a Sink,
    pipeline: Pipeline,
    /// Process name → (idle, peak) RSS in KiB.
    memory: BTreeMap<String, (u64, u64)>,
}

impl Run<'_> {
    async fn all(&mut self, report: &mut Report) -> anyhow::Result<()> {
        self.note_memory();
        for repetition in 0..self.plan.repetitions {
            report.ingress.push(self.ingress_alone(repetition).await);
        }
        self.pipeline.purge_in().await;
        self.pipeline.start_services(true).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.note_memory();
        let c = self.plan.concurrency;
        let mut closed = Vec::new();
        for repetition in 0..self.plan.repetitions {
            closed.push(self.deliver(Load::Closed(c), repetition).await);
        }
        let capacity = median(closed.iter().map(|d| d.delivered_per_s));
        report.deliveries.extend(closed);
        for repetition in 0..self.plan.repetitions {
            for &fraction in &self.plan.rates {
                let load = Load::Rate(fraction, (capacity * fraction).max(1.0));
                report.deliveries.push(self.deliver(load, repetition).await);
            }
        }
        self.note_memory();
        report.deliveries.push(self.backlog_drain().await?);
        self.note_memory();
        report.memory.extend(
            self.memory
                .iter()
                .map(|(name, &(idle, peak))| ServiceMemory {
                    topology: self.topology,
                    mode: self.mode,
                    service: name.clone(),
                    idle_rss_kib: idle,
                    peak_rss_kib: peak,
                }),
        );
        Ok(())
    }

    /// Notes each running process's RSS: the first time seen as its idle RSS, and its peak.
    fn note_memory(&mut self) {
        for proc in self.pipeline.procs() {
            let entry = self
                .memory
                .entry(proc.name().to_owned())
                .or_insert((proc.rss_kib(), 0));
            entry.1 = entry.1.max(proc.peak_rss_kib());
        }
    }

    fn prefix(&self, what: &str, repetition: usize) -> String {
        format!(
            "{}.{:?}.{what}.{repetition}",
            self.topology.label(),
            self.mode
        )
    }

    /// W1 on this topology: ingress alone, closed loop; what it lost is checked in the stream.
    async fn ingress_alone(&self, repetition: usize) -> IngressRun {
        let p = &self.pipeline;
        p.purge_in().await;
        let bodies = Bodies::new(self.plan.body, &self.prefix("ingress", repetition));
        let duration = Duration::from_secs_f64(self.plan.seconds);
        let c = self.plan.concurrency;
        let mut outcome = load::closed_loop(p.ingress.addr, PATH, &bodies, c, duration).await;
        let lost = stored(&p.js, &in_stream(NAMESPACE))
            .await
            .map(|n| outcome.ok.saturating_sub(n));
        IngressRun {
            topology: self.topology,
            mode: self.mode,
            concurrency: c,
            repetition,
            accepted: outcome.ok,
            accepted_per_s: outcome.ok_per_second(),
            p99_ms: f64::from(outcome.percentile(99.0)) / 1000.0,
            lost,
        }
    }

    /// W2: one load against the running pipeline, then the drain wait and the tally.
    async fn deliver(&self, load: Load, repetition: usize) -> Delivery {
        let p = &self.pipeline;
        let bodies = Bodies::tracked(self.plan.body, &self.prefix(&load.tag(), repetition));
        self.sink.take();
        let cpu = p.cpu_seconds();
        let started = Instant::now();
        let outcome = self.send(load, &bodies).await;
        let left_queued = self.drain().await;
        let run = Finished {
            cpu: p.cpu_seconds() - cpu,
            tally: self.tally(&bodies, &outcome).await,
            outcome,
            started,
            left_queued,
        };
        self.delivery(load, repetition, &run)
    }

    /// W3: the worker killed, `drain_events` accepted and routed, then the worker started; CPU
    /// and time count from the worker's start.
    async fn backlog_drain(&mut self) -> anyhow::Result<Delivery> {
        self.pipeline.worker = None;
        let load = Load::Drain(self.plan.concurrency, self.plan.drain_events);
        let bodies = Bodies::tracked(self.plan.body, &self.prefix(&load.tag(), 0));
        self.sink.take();
        let outcome = self.send(load, &bodies).await;
        let deadline = Instant::now() + self.plan.drain_limit;
        while self.pipeline.unrouted().await != Some(0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cpu = self.pipeline.cpu_seconds();
        let started = Instant::now();
        self.pipeline.start_worker().await?;
        let left_queued = self.drain().await;
        let run = Finished {
            cpu: self.pipeline.cpu_seconds() - cpu,
            tally: self.tally(&bodies, &outcome).await,
            outcome,
            started,
            left_queued,
        };
        Ok(self.delivery(load, 0, &run))
    }

    /// Sends `load` to ingress: for `seconds`, or until the backlog is accepted.
    async fn send(&self, load: Load, bodies: &Bodies) -> Outcome {
        let addr = self.pipeline.ingress.addr;
        let duration = Duration::from_secs_f64(self.plan.seconds);
        match load {
            Load::Closed(c) => load::closed_loop(addr, PATH, bodies, c, duration).await,
            Load::Rate(_, rate) => load::open_loop(addr, PATH, bodies, rate, duration, 512).await,
            Load::Drain(c, events) => {
                let stop = Stop::accepted(events, Duration::from_secs(600));
                load::closed_loop_until(addr, PATH, bodies, c, stop).await
            }
        }
    }

    /// Waits until nothing is left queued (at most `drain_limit`); what is left.
    async fn drain(&self) -> Option<u64> {
        let deadline = Instant::now() + self.plan.drain_limit;
        loop {
            let left = self.pipeline.backlog().await;
            if left == Some(0) || Instant::now() > deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn tally(&self, bodies: &Bodies, outcome: &Outcome) -> Tally {
        let dead = self.pipeline.dead_ids().await;
        Tally::of(bodies.prefix(), &outcome.accepts, &self.sink.take(), &dead)
    }

    fn delivery(&self, load: Load, repetition: usize, run: &Finished) -> Delivery {
        let Finished {
            outcome,
            tally,
            started,
            cpu,
            left_queued,
        } = run;
        let (started, cpu, left_queued) = (*started, *cpu, *left_queued);
        let seconds = tally
            .last
            .map(|l| (l - started).as_secs_f64())
            .unwrap_or(0.0);
        let latency = |p: f64| {
            let mut l = tally.latencies_us.clone();
            (!l.is_empty() && !matches!(load, Load::Drain(..)))
                .then(|| f64::from(load::percentile(&mut l, p)) / 1000.0)
        };
        Delivery {
            topology: self.topology,
            mode: self.mode,
            load: load.name().to_owned(),
            concurrency: load.concurrency(),
            fraction: load.fraction(),
            offered_per_s: load.offered(),
            repetition,
            accepted: outcome.ok,
            delivered: tally.delivered,
            delivered_per_s: tally.delivered as f64 / seconds.max(1e-9),
            seconds,
            p50_ms: latency(50.0),
            p99_ms: latency(99.0),
            p999_ms: latency(99.9),
            lost: tally.lost,
            dead_lettered: tally.dead,
            duplicates: tally.duplicates,
            left_queued,
            cpu_s_per_1000: (tally.delivered > 0).then(|| cpu * 1000.0 / tally.delivered as f64),
        }
    }
}

/// The load of one delivery run.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// In flight at once.
    Closed(usize),
    /// Fraction of capacity, and the rate it is.
    Rate(f64, f64),
    /// The backlog: concurrency, events.
    Drain(usize, u64),
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Self::Closed(_) => "closed",
            Self::Rate(..) => "rate",
            Self::Drain(..) => "drain",
        }
    }

    /// A name unique among the loads of one repetition, for body ids: two runs sending the
    /// same bodies would send the same events, and ingress would store the second copy of each
    /// only once (the stream's duplicate window), as it should.
    fn tag(self) -> String {
        match self {
            Self::Rate(fraction, _) => format!("rate{:.0}", fraction * 1000.0),
            _ => self.name().to_owned(),
        }
    }

    fn concurrency(self) -> usize {
        match self {
            Self::Closed(c) | Self::Drain(c, _) => c,
            Self::Rate(..) => 512,
        }
    }

    fn fraction(self) -> Option<f64> {
        match self {
            Self::Rate(fraction, _) => Some(fraction),
            _ => None,
        }
    }

    fn offered(self) -> Option<f64> {
        match self {
            Self::Rate(_, rate) => Some(rate),
            _ => None,
        }
    }
}

/// One load sent and drained: what the delivery record is made of.
struct Finished {
    outcome: Outcome,
    tally: Tally,
    /// When the load began (W3: when the worker was started).
    started: Instant,
    cpu: f64,
    left_queued: Option<u64>,
}

/// What the sink received of one run, matched to what ingress accepted.
#[derive(Debug, Default)]
struct Tally {
    delivered: u64,
    duplicates: u64,
    lost: u64,
    dead: u64,
    latencies_us: Vec<u32>,
    last: Option<Instant>,
}

impl Tally {
    /// `accepts`: body numbers ingress answered 2xx, and when; `receipts`: what the sink got;
    /// `dead`: ids found in the dead letters. Only ids of this run (`prefix`) count.
    fn of(prefix: &str, accepts: &[(u64, Instant)], receipts: &[Receipt], dead: &[String]) -> Self {
        let mut tally = Self::default();
        let mut first: HashMap<u64, Instant> = HashMap::new();
        for (id, at) in receipts {
            let Some(n) = number(prefix, id) else {
                continue;
            };
            match first.entry(n) {
                Entry::Occupied(_) => tally.duplicates += 1,
                Entry::Vacant(v) => {
                    v.insert(*at);
                }
            }
            tally.last = tally.last.max(Some(*at));
        }
        let dead: HashSet<u64> = dead.iter().filter_map(|id| number(prefix, id)).collect();
        for (n, accepted_at) in accepts {
            match first.get(n) {
                Some(at) => tally
                    .latencies_us
                    .push(micros(at.saturating_duration_since(*accepted_at))),
                None if dead.contains(n) => tally.dead += 1,
                None => tally.lost += 1,
            }
        }
        tally.delivered = accepts
            .iter()
            .filter(|(n, _)| first.contains_key(n))
            .count() as u64;
        tally
    }
}

/// The number of a body id `<prefix>-<n>` of this run.
fn number(prefix: &str, id: &str) -> Option<u64> {
    id.strip_prefix(prefix)?.strip_prefix('-')?.parse().ok()
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    crate::report::Spread::of(&values.collect::<Vec<_>>())
        .map(|s| s.median)
        .unwrap_or(0.0)
}

/// r3 / single for W1 ingress, W2 closed-loop delivered/s and W3 drain, in each mode.
fn ratios(report: &Report) -> Vec<TopologyRatio> {
    let mut modes: Vec<Mode> = Vec::new();
    for r in &report.ingress {
        if !modes.contains(&r.mode) {
            modes.push(r.mode);
        }
    }
    let mut out = Vec::new();
    for mode in modes {
        let ingress = |t: Topology| {
            median(
                report
                    .ingress
                    .iter()
                    .filter(|r| r.mode == mode && r.topology == t)
                    .map(|r| r.accepted_per_s),
            )
        };
        let delivered = |t: Topology, load: &str| {
            median(
                report
                    .deliveries
                    .iter()
                    .filter(|d| d.mode == mode && d.topology == t && d.load == load)
                    .map(|d| d.delivered_per_s),
            )
        };
        let measures = [
            (
                "W1 ingress accepted/s, closed loop",
                ingress(Topology::Single),
                ingress(Topology::R3),
            ),
            (
                "W2 delivered/s, closed loop",
                delivered(Topology::Single, "closed"),
                delivered(Topology::R3, "closed"),
            ),
            (
                "W3 drain delivered/s",
                delivered(Topology::Single, "drain"),
                delivered(Topology::R3, "drain"),
            ),
        ];
        for (measure, single, r3) in measures {
            if single > 0.0 && r3 > 0.0 {
                out.push(TopologyRatio {
                    mode,
                    measure: measure.to_owned(),
                    single,
                    r3,
                    r3_over_single: r3 / single,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_tells_delivered_duplicated_dead_and_lost_apart() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(5);
        let accepts: Vec<(u64, Instant)> = (0..4).map(|n| (n, t0)).collect();
        let receipts = vec![
            ("run-0".to_owned(), later),
            ("run-0".to_owned(), later),
            ("run-1".to_owned(), later),
            // Another run's event with a longer prefix, and a stray: neither counts.
            ("run-1-2".to_owned(), later),
            ("other-2".to_owned(), later),
        ];
        let dead = vec!["run-2".to_owned()];
        let tally = Tally::of("run", &accepts, &receipts, &dead);
        assert_eq!(tally.delivered, 2);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.dead, 1);
        assert_eq!(tally.lost, 1, "run-3 was accepted and went nowhere");
        assert_eq!(tally.latencies_us, vec![5000, 5000]);
        assert_eq!(tally.last, Some(later));
    }
}
