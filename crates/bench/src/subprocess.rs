//! Subprocess step throughput: one real Python 3 program run the two ways a `subprocess` step
//! can run it (`hookyard_worker::subprocess`, the worker's own code): a process per event
//! (`oneshot`, `concurrency` at once) and a pool of long-lived copies (`persistent`,
//! `processes = concurrency`), closed loop, repetitions interleaved (oneshot, persistent,
//! oneshot, …). Every answer is checked against its event.
//!
//! Before each measurement one event per lane is run unmeasured, so that the pool has started
//! its copies: a pool starts once per worker, not per event. CPU is counted for the programs
//! (children of the bench, see [`procs::children_cpu_seconds`]) and for the bench process,
//! which does the worker's share (spawning, pipes, JSON); no NATS or other service runs then.

mod program;
mod report;

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use anyhow::Context;
use futures::future::join_all;
use hookyard_worker::subprocess::{Pool, Program, RunError, run_once};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

pub use report::{Report, problems, table};

use crate::procs;
use program::Event;
use report::{Record, Tally};

/// What the subprocess measurement does, from the command line.
#[derive(Debug, Clone)]
pub struct Plan {
    pub repetitions: usize,
    /// Seconds per measurement, unless `events` is given.
    pub seconds: f64,
    /// Events per measurement instead of a duration.
    pub events: Option<u64>,
    /// Events in flight: processes at once (oneshot), the pool's processes (persistent).
    pub concurrency: usize,
    pub body_bytes: usize,
    /// The interpreter (default `python3` on PATH).
    pub python: Option<PathBuf>,
    /// Interpreter flags, before the script.
    pub python_args: Vec<String>,
}

/// How a `subprocess` step runs its program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Way {
    /// A process per event: the input on stdin, one JSON value on stdout.
    Oneshot,
    /// Long-lived copies speaking JSON lines.
    Persistent,
}

impl Way {
    pub const ALL: [Way; 2] = [Way::Oneshot, Way::Persistent];

    /// The step's `mode` and the script's argument.
    pub fn name(self) -> &'static str {
        match self {
            Self::Oneshot => "oneshot",
            Self::Persistent => "persistent",
        }
    }
}

/// Runs every measurement of `plan`, with the script written into `dir`.
pub async fn run(plan: &Plan, dir: &Path) -> anyhow::Result<Report> {
    let python = program::python(plan.python.as_deref())?;
    let script = program::install(dir)?;
    let mut records = Vec::new();
    for repetition in 0..plan.repetitions.max(1) {
        for way in Way::ALL {
            let runner = Runner::new(
                way,
                program::program(&python, &plan.python_args, &script, way)?,
                plan,
            );
            let measured = measure(plan, way, &runner, repetition).await;
            runner.stop().await;
            records.push(measured?);
        }
    }
    Ok(Report::new(
        python.version,
        plan.python_args.clone(),
        records,
    ))
}

/// The program, run one of the two ways.
enum Runner {
    Oneshot(Program),
    Persistent(Pool),
}

impl Runner {
    fn new(way: Way, program: Program, plan: &Plan) -> Self {
        match way {
            Way::Oneshot => Self::Oneshot(program),
            Way::Persistent => Self::Persistent(Pool::new(program, plan.concurrency)),
        }
    }

    /// Runs the program on one event, as the worker's step does (serializing included).
    async fn call(&self, event: &Event) -> Result<Value, RunError> {
        match self {
            Self::Oneshot(program) => {
                run_once(program, event.document.to_string().as_bytes()).await
            }
            Self::Persistent(pool) => pool.call(&event.id, &event.document).await,
        }
    }

    /// Stops the pool's copies (closing their stdin) and reaps them.
    async fn stop(&self) {
        if let Self::Persistent(pool) = self {
            pool.shutdown().await;
        }
    }
}

/// One measurement: warm-up, then `concurrency` lanes until the budget is spent.
async fn measure(
    plan: &Plan,
    way: Way,
    runner: &Runner,
    repetition: usize,
) -> anyhow::Result<Record> {
    warm_up(plan, runner)
        .await
        .with_context(|| format!("the {} program failed while warming up", way.name()))?;
    let processes = (way == Way::Persistent).then(|| procs::running_children().len());
    let budget = Budget::new(plan);
    let (program_before, bench_before) = (procs::children_cpu_seconds(), procs::self_cpu_seconds());
    let started = Instant::now();
    let lanes = (0..plan.concurrency.max(1)).map(|_| lane(runner, &budget, plan.body_bytes));
    let tally = join_all(lanes)
        .await
        .into_iter()
        .fold(Tally::default(), Tally::merge);
    let seconds = started.elapsed().as_secs_f64();
    let program_cpu = procs::children_cpu_seconds() - program_before;
    let bench_cpu = procs::self_cpu_seconds() - bench_before;
    Ok(Record::new(
        way,
        plan,
        repetition,
        processes,
        seconds,
        tally,
        (program_cpu, bench_cpu),
    ))
}

/// Runs one event per lane at once, unmeasured: the pool starts a copy per lane (a copy is
/// busy while the next call arrives, so each call takes a new slot) and the interpreter's
/// files are in the page cache for both ways. Any failure here stops the run: the program is
/// broken, and measuring it would only count errors.
async fn warm_up(plan: &Plan, runner: &Runner) -> anyhow::Result<()> {
    let calls = (0..plan.concurrency.max(1) as u64).map(|n| async move {
        let event = Event::new(n, plan.body_bytes);
        let answer = runner
            .call(&event)
            .await
            .with_context(|| format!("event {}", event.id))?;
        anyhow::ensure!(
            event.answered_by(&answer),
            "event {}: unexpected answer {answer}",
            event.id
        );
        Ok(())
    });
    join_all(calls).await.into_iter().collect()
}

/// Sends events on one lane, one at a time, until the budget is spent.
async fn lane(runner: &Runner, budget: &Budget, body_bytes: usize) -> Tally {
    let mut tally = Tally::default();
    while let Some(n) = budget.take() {
        let event = Event::new(n, body_bytes);
        let sent = Instant::now();
        let answer = runner.call(&event).await;
        tally.add(&event, sent.elapsed(), answer);
    }
    tally
}

/// The events of one measurement: numbered after the warm-up's, until `events` are taken or,
/// without a count, until the deadline has passed.
struct Budget {
    first: u64,
    next: AtomicU64,
    events: Option<u64>,
    deadline: Option<Instant>,
}

impl Budget {
    fn new(plan: &Plan) -> Self {
        let first = plan.concurrency.max(1) as u64;
        let deadline = match plan.events {
            Some(_) => None,
            None => Some(Instant::now() + Duration::from_secs_f64(plan.seconds.max(0.0))),
        };
        Self {
            first,
            next: AtomicU64::new(first),
            events: plan.events,
            deadline,
        }
    }

    /// The next event's number, or `None` when the measurement is over.
    fn take(&self) -> Option<u64> {
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        match self.events {
            Some(events) if n - self.first >= events => None,
            _ => Some(n),
        }
    }
}
