//! Results of the subprocess measurement: one record per measurement, a summary per way
//! (median and min–max over repetitions), the ratios, the printed table and the smoke checks.

use std::time::Duration;

use hookyard_worker::subprocess::RunError;
use serde::Serialize;
use serde_json::Value;

use super::{Plan, Way, program::Event};
use crate::{load::percentile, report::Spread};

/// The most of an unexpected answer or error kept in a record: enough to see what went wrong.
const PROBLEM_CHARS: usize = 300;

/// What the lanes of one measurement saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Latency of every answered event whose answer matched, in microseconds.
    latencies_us: Vec<u32>,
    ok: u64,
    failed: u64,
    mismatched: u64,
    first_problem: Option<String>,
}

impl Tally {
    /// Counts one event's outcome.
    pub fn add(&mut self, event: &Event, took: Duration, answer: Result<Value, RunError>) {
        match answer {
            Ok(answer) if event.answered_by(&answer) => {
                self.ok += 1;
                self.latencies_us
                    .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            }
            Ok(answer) => {
                self.mismatched += 1;
                self.note(format!("event {}: unexpected answer {answer}", event.id));
            }
            Err(error) => {
                self.failed += 1;
                self.note(format!("event {}: {} ({error})", event.id, error.label()));
            }
        }
    }

    fn note(&mut self, problem: String) {
        self.first_problem
            .get_or_insert_with(|| problem.chars().take(PROBLEM_CHARS).collect());
    }

    pub fn merge(mut self, other: Tally) -> Tally {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        self.failed += other.failed;
        self.mismatched += other.mismatched;
        self.first_problem = self.first_problem.or(other.first_problem);
        self
    }
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub way: Way,
    pub concurrency: usize,
    /// Persistent: the pool's running copies once warmed up (should be `concurrency`).
    pub processes: Option<usize>,
    /// Serialized size of the event body.
    pub body_bytes: usize,
    pub repetition: usize,
    /// Events answered correctly.
    pub events: u64,
    /// Events whose call failed.
    pub failed: u64,
    /// Events answered with another event's (or a wrong) result.
    pub mismatched: u64,
    /// The first failure or wrong answer, shortened.
    pub first_problem: Option<String>,
    pub seconds: f64,
    pub events_per_s: f64,
    pub p50_us: u32,
    pub p99_us: u32,
    /// CPU seconds of the programs per 1000 correct events.
    pub program_cpu_s_per_1000: Option<f64>,
    /// CPU seconds of the bench process (the worker's share) per 1000 correct events.
    pub bench_cpu_s_per_1000: Option<f64>,
}

impl Record {
    /// The record of a measurement that took `seconds` and used `cpu` (programs, bench).
    pub fn new(
        way: Way,
        plan: &Plan,
        repetition: usize,
        processes: Option<usize>,
        seconds: f64,
        mut tally: Tally,
        cpu: (f64, f64),
    ) -> Self {
        let per_1000 = |cpu: f64| (tally.ok > 0).then(|| cpu * 1000.0 / tally.ok as f64);
        Self {
            way,
            concurrency: plan.concurrency,
            processes,
            body_bytes: plan.body_bytes,
            repetition,
            events: tally.ok,
            failed: tally.failed,
            mismatched: tally.mismatched,
            seconds,
            events_per_s: tally.ok as f64 / seconds.max(1e-9),
            p50_us: percentile(&mut tally.latencies_us, 50.0),
            p99_us: percentile(&mut tally.latencies_us, 99.0),
            program_cpu_s_per_1000: per_1000(cpu.0),
            bench_cpu_s_per_1000: per_1000(cpu.1),
            first_problem: tally.first_problem,
        }
    }
}

/// One way over its repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub way: Way,
    pub concurrency: usize,
    pub processes: Option<usize>,
    pub body_bytes: usize,
    pub events_per_s: Spread,
    pub p50_us: Spread,
    pub p99_us: Spread,
    pub program_cpu_s_per_1000: Option<Spread>,
    pub bench_cpu_s_per_1000: Option<Spread>,
}

/// A ratio of the two ways' medians.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub name: &'static str,
    pub value: f64,
}

/// Everything the subprocess measurement found; goes into the JSON file as `subprocess`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The interpreter's version.
    pub python: String,
    /// Its flags before the script (`--python-arg`).
    pub python_args: Vec<String>,
    pub records: Vec<Record>,
    pub summaries: Vec<Summary>,
    pub ratios: Vec<Ratio>,
}

impl Report {
    pub fn new(python: String, python_args: Vec<String>, records: Vec<Record>) -> Self {
        let summaries: Vec<Summary> = Way::ALL
            .into_iter()
            .filter_map(|way| summarize(way, &records))
            .collect();
        let ratios = ratios(&summaries);
        Self {
            python,
            python_args,
            records,
            summaries,
            ratios,
        }
    }
}

fn summarize(way: Way, records: &[Record]) -> Option<Summary> {
    let rs: Vec<&Record> = records.iter().filter(|r| r.way == way).collect();
    let first = rs.first()?;
    let spread =
        |f: &dyn Fn(&Record) -> f64| Spread::of(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
    let optional = |f: &dyn Fn(&Record) -> Option<f64>| {
        Spread::of(&rs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
    };
    Some(Summary {
        way,
        concurrency: first.concurrency,
        processes: rs.iter().filter_map(|r| r.processes).min(),
        body_bytes: first.body_bytes,
        events_per_s: spread(&|r| r.events_per_s)?,
        p50_us: spread(&|r| f64::from(r.p50_us))?,
        p99_us: spread(&|r| f64::from(r.p99_us))?,
        program_cpu_s_per_1000: optional(&|r| r.program_cpu_s_per_1000),
        bench_cpu_s_per_1000: optional(&|r| r.bench_cpu_s_per_1000),
    })
}

/// Persistent against oneshot: throughput, and CPU per event (programs plus bench).
fn ratios(summaries: &[Summary]) -> Vec<Ratio> {
    let find = |way: Way| summaries.iter().find(|s| s.way == way);
    let (Some(oneshot), Some(persistent)) = (find(Way::Oneshot), find(Way::Persistent)) else {
        return Vec::new();
    };
    let cpu = |s: &Summary| {
        Some(s.program_cpu_s_per_1000?.median + s.bench_cpu_s_per_1000?.median).filter(|c| *c > 0.0)
    };
    let mut out = Vec::new();
    if oneshot.events_per_s.median > 0.0 {
        out.push(Ratio {
            name: "persistent / oneshot events/s",
            value: persistent.events_per_s.median / oneshot.events_per_s.median,
        });
    }
    if let (Some(oneshot), Some(persistent)) = (cpu(oneshot), cpu(persistent)) {
        out.push(Ratio {
            name: "oneshot / persistent CPU per event",
            value: oneshot / persistent,
        });
    }
    out
}

fn ms(us: f64) -> String {
    format!("{:.1}", us / 1000.0)
}

fn cpu_cell(spread: Option<Spread>) -> String {
    spread.map_or_else(|| "–".into(), |c| format!("{:.3}", c.median))
}

fn way_cell(s: &Summary) -> String {
    match (s.way, s.processes) {
        (Way::Oneshot, _) => "oneshot (a process per event)".to_owned(),
        (Way::Persistent, Some(n)) => format!("persistent ({n} processes)"),
        (Way::Persistent, None) => "persistent".to_owned(),
    }
}

/// The table printed at the end (and pasted into docs/benchmarks.md).
pub fn table(report: &Report) -> String {
    let mut out = format!("Python {}", report.python);
    if !report.python_args.is_empty() {
        out.push_str(&format!(" with {}", report.python_args.join(" ")));
    }
    out.push_str(":\n\n");
    out.push_str("| subprocess step | body | c | events/s median [min–max] | p50 / p99 ms (median) | program CPU s per 1000 | bench CPU s per 1000 |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for s in &report.summaries {
        out.push_str(&format!(
            "| {} | {} KiB | {} | {:.0} [{:.0}–{:.0}] | {} / {} | {} | {} |\n",
            way_cell(s),
            s.body_bytes / 1024,
            s.concurrency,
            s.events_per_s.median,
            s.events_per_s.min,
            s.events_per_s.max,
            ms(s.p50_us.median),
            ms(s.p99_us.median),
            cpu_cell(s.program_cpu_s_per_1000),
            cpu_cell(s.bench_cpu_s_per_1000),
        ));
    }
    out.push_str("\n| ratio | value |\n|---|---|\n");
    for r in &report.ratios {
        out.push_str(&format!("| {} | {:.2} |\n", r.name, r.value));
    }
    out
}

/// What the smoke run must see: each way answered events, every call succeeded, every answer
/// was its own event's.
pub fn problems(report: &Report) -> Vec<String> {
    let mut problems = Vec::new();
    for way in Way::ALL {
        if !report.records.iter().any(|r| r.way == way && r.events > 0) {
            problems.push(format!("subprocess {}: no event answered", way.name()));
        }
    }
    for r in &report.records {
        if r.failed > 0 || r.mismatched > 0 {
            problems.push(format!(
                "subprocess {}: {} failed, {} wrong answers; first: {}",
                r.way.name(),
                r.failed,
                r.mismatched,
                r.first_problem.as_deref().unwrap_or("?")
            ));
        }
    }
    problems
}
