//! Results: one record per measurement, summaries (median and min–max over repetitions), the
//! ratios docs/benchmarks.md explains, the JSON file and the printed table.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::procs::Mode;

/// The systems measured side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum System {
    /// hookyard-ingress with group commit (default batch settings).
    Ingress,
    /// hookyard-ingress with `--batch-max 1`: one publish per request (naive ingress).
    IngressUnbatched,
    /// hookyard-ingress with group commit and OpenTelemetry traces on, every request sampled,
    /// exported over OTLP to a sink.
    IngressTraced,
    /// Minimal hyper server: read body, one JetStream publish, 202.
    NaivePublish,
    /// Bare hyper server answering 202 (HTTP ceiling).
    Http202,
    /// Raw JetStream publishes, each awaiting its ack, at the same in-flight count.
    JsOneByOne,
    /// Raw atomic JetStream batches at the same in-flight count.
    JsBatched,
}

impl System {
    pub const ALL: [System; 7] = [
        System::Ingress,
        System::IngressUnbatched,
        System::IngressTraced,
        System::NaivePublish,
        System::Http202,
        System::JsOneByOne,
        System::JsBatched,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ingress => "ingress (group commit)",
            Self::IngressUnbatched => "ingress, batch 1",
            Self::IngressTraced => "ingress, traced (sampling 1.0)",
            Self::NaivePublish => "naive HTTP+publish",
            Self::Http202 => "bare HTTP 202",
            Self::JsOneByOne => "raw JS one-by-one",
            Self::JsBatched => "raw JS batched",
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub mode: Mode,
    pub system: System,
    /// `closed` (concurrency) or `rate` (offered requests/s).
    pub load: String,
    pub concurrency: usize,
    pub offered_per_s: Option<f64>,
    pub body_bytes: usize,
    pub repetition: usize,
    pub accepted_per_s: f64,
    pub p50_us: u32,
    pub p99_us: u32,
    pub p999_us: u32,
    pub accepted: u64,
    pub shed: u64,
    pub other: u64,
    pub errors: u64,
    /// Accepted but not found in the stream afterwards (must be 0).
    pub lost: Option<u64>,
    /// CPU seconds per 1000 accepted events, summed over the system's processes and NATS.
    pub cpu_s_per_1000: Option<f64>,
    /// Peak RSS of the service process, KiB.
    pub peak_rss_kib: Option<u64>,
}

/// Median, min and max.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// Summary of one (mode, system, load, concurrency/rate, body) over its repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub mode: Mode,
    pub system: System,
    pub load: String,
    pub concurrency: usize,
    pub offered_per_s: Option<f64>,
    pub body_bytes: usize,
    pub accepted_per_s: Spread,
    pub p50_us: Spread,
    pub p99_us: Spread,
    pub p999_us: Spread,
    pub cpu_s_per_1000: Option<Spread>,
}

type Key = (String, System, String, usize, u64, usize);

fn key(r: &Record) -> Key {
    (
        format!("{:?}", r.mode),
        r.system,
        r.load.clone(),
        r.concurrency,
        r.offered_per_s.map(|o| o as u64).unwrap_or(0),
        r.body_bytes,
    )
}

pub fn summarize(records: &[Record]) -> Vec<Summary> {
    let mut groups: BTreeMap<Key, Vec<&Record>> = BTreeMap::new();
    for r in records {
        groups.entry(key(r)).or_default().push(r);
    }
    groups
        .into_values()
        .filter_map(|rs| {
            let first = rs[0];
            let pick = |f: &dyn Fn(&Record) -> f64| {
                Spread::of(&rs.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let cpu: Vec<f64> = rs.iter().filter_map(|r| r.cpu_s_per_1000).collect();
            Some(Summary {
                mode: first.mode,
                system: first.system,
                load: first.load.clone(),
                concurrency: first.concurrency,
                offered_per_s: first.offered_per_s,
                body_bytes: first.body_bytes,
                accepted_per_s: pick(&|r| r.accepted_per_s)?,
                p50_us: pick(&|r| f64::from(r.p50_us))?,
                p99_us: pick(&|r| f64::from(r.p99_us))?,
                p999_us: pick(&|r| f64::from(r.p999_us))?,
                cpu_s_per_1000: Spread::of(&cpu),
            })
        })
        .collect()
}

/// A ratio of two medians at one (mode, body, concurrency).
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub mode: Mode,
    pub body_bytes: usize,
    pub concurrency: usize,
    pub name: String,
    pub value: f64,
}

pub fn ratios(summaries: &[Summary]) -> Vec<Ratio> {
    let find = |mode: Mode, system: System, body: usize, c: usize| {
        summaries
            .iter()
            .find(|s| {
                s.mode == mode
                    && s.system == system
                    && s.body_bytes == body
                    && s.concurrency == c
                    && s.load == "closed"
            })
            .map(|s| s.accepted_per_s.median)
    };
    // Group commit against its floors; and batching off (every event its own publish,
    // pipelined), the better setting under the NATS default sync, against the naive floor.
    let against: [(System, &[(&str, System)]); 2] = [
        (
            System::Ingress,
            &[
                ("ingress / batched-publish floor", System::JsBatched),
                ("ingress / HTTP floor", System::Http202),
                ("batched / unbatched ingress", System::IngressUnbatched),
                ("ingress / naive HTTP+publish", System::NaivePublish),
                ("ingress / traced ingress", System::IngressTraced),
            ],
        ),
        (
            System::IngressUnbatched,
            &[("ingress batch 1 / naive HTTP+publish", System::NaivePublish)],
        ),
    ];
    let mut out = Vec::new();
    for (system, others) in against {
        for s in summaries
            .iter()
            .filter(|s| s.system == system && s.load == "closed")
        {
            ratios_of(s, others, &find, &mut out);
        }
    }
    out
}

/// `s`'s accepted/s against each of `others` at its mode, body and concurrency.
fn ratios_of(
    s: &Summary,
    others: &[(&str, System)],
    find: &dyn Fn(Mode, System, usize, usize) -> Option<f64>,
    out: &mut Vec<Ratio>,
) {
    let ingress = s.accepted_per_s.median;
    for &(name, other) in others {
        if let Some(base) = find(s.mode, other, s.body_bytes, s.concurrency).filter(|b| *b > 0.0) {
            out.push(Ratio {
                mode: s.mode,
                body_bytes: s.body_bytes,
                concurrency: s.concurrency,
                name: name.to_owned(),
                value: ingress / base,
            });
        }
    }
}

fn ms(us: f64) -> String {
    format!("{:.1}", us / 1000.0)
}

/// The table printed at the end (and pasted into the README).
pub fn table(summaries: &[Summary], ratios: &[Ratio]) -> String {
    let mut out = String::new();
    out.push_str("| mode | body | load | system | accepted/s median [min–max] | p50 / p99 / p99.9 ms (median) | CPU s per 1000 |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for s in summaries {
        let load = match s.offered_per_s {
            Some(rate) => format!("{rate:.0}/s offered"),
            None => format!("c={}", s.concurrency),
        };
        out.push_str(&format!(
            "| {} | {} KiB | {} | {} | {:.0} [{:.0}–{:.0}] | {} / {} / {} | {} |\n",
            s.mode.label(),
            s.body_bytes / 1024,
            load,
            s.system.name(),
            s.accepted_per_s.median,
            s.accepted_per_s.min,
            s.accepted_per_s.max,
            ms(s.p50_us.median),
            ms(s.p99_us.median),
            ms(s.p999_us.median),
            s.cpu_s_per_1000
                .map(|c| format!("{:.3}", c.median))
                .unwrap_or_else(|| "–".into()),
        ));
    }
    out.push_str("\n| mode | body | c | ratio | value |\n|---|---|---|---|---|\n");
    for r in ratios {
        out.push_str(&format!(
            "| {} | {} KiB | {} | {} | {:.2} |\n",
            r.mode.label(),
            r.body_bytes / 1024,
            r.concurrency,
            r.name,
            r.value
        ));
    }
    out
}
