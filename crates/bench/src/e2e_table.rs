//! The printed tables of the end-to-end part, and what its smoke run must see.

use std::collections::BTreeMap;

use crate::{
    e2e::{Delivery, IngressRun, Report},
    procs::{Mode, Topology},
    report::Spread,
};

/// The target for a service's idle memory.
const IDLE_RSS_TARGET_BYTES: u64 = 30_000_000;

fn spread(values: impl Iterator<Item = f64>) -> String {
    match Spread::of(&values.collect::<Vec<_>>()) {
        Some(s) => format!("{:.0} [{:.0}–{:.0}]", s.median, s.min, s.max),
        None => "–".to_owned(),
    }
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    Spread::of(&values.collect::<Vec<_>>()).map(|s| s.median)
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
}

/// Every table of the part: W1 per topology, W2 and W3, memory, r3 / single.
pub fn table(report: &Report) -> String {
    let mut out = ingress_table(&report.ingress);
    out.push('\n');
    out.push_str(&delivery_table(&report.deliveries));
    out.push('\n');
    out.push_str(&memory_table(report));
    out.push_str("\n| mode | measure | single | r3 | r3 / single |\n|---|---|---|---|---|\n");
    for r in &report.ratios {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.2} |\n",
            r.mode.label(),
            r.measure,
            r.single,
            r.r3,
            r.r3_over_single
        ));
    }
    out
}

fn ingress_table(runs: &[IngressRun]) -> String {
    let mut groups: BTreeMap<(Topology, Mode, usize), Vec<&IngressRun>> = BTreeMap::new();
    for r in runs {
        let key = (r.topology, r.mode, r.concurrency);
        groups.entry(key).or_default().push(r);
    }
    let mut out = String::from(
        "| topology | mode | W1 ingress alone | accepted/s median [min–max] | p99 ms (median) | lost |\n|---|---|---|---|---|---|\n",
    );
    for ((topology, mode, c), rs) in groups {
        let lost: u64 = rs.iter().filter_map(|r| r.lost).sum();
        out.push_str(&format!(
            "| {} | {} | c={c} | {} | {} | {lost} |\n",
            topology.label(),
            mode.label(),
            spread(rs.iter().map(|r| r.accepted_per_s)),
            ms(median(rs.iter().map(|r| r.p99_ms))),
        ));
    }
    out
}

/// W2 and W3 rows, one per (topology, mode, load), medians over the repetitions and sums of
/// what went wrong.
fn delivery_table(deliveries: &[Delivery]) -> String {
    type Key = (Topology, Mode, u8, u64);
    let mut groups: BTreeMap<Key, Vec<&Delivery>> = BTreeMap::new();
    for d in deliveries {
        let order = match d.load.as_str() {
            "closed" => 0,
            "rate" => 1,
            _ => 2,
        };
        let fraction = (d.fraction.unwrap_or(0.0) * 1000.0) as u64;
        let key = (d.topology, d.mode, order, fraction);
        groups.entry(key).or_default().push(d);
    }
    let mut out = String::from(
        "| topology | mode | load | accepted | delivered/s median [min–max] | accept→receive p50 / p99 / p99.9 ms | lost | dead-lettered | duplicates | left queued | CPU s per 1000 (all processes) |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for ((topology, mode, _, _), ds) in groups {
        let sum = |f: fn(&Delivery) -> u64| ds.iter().map(|d| f(d)).sum::<u64>();
        let left = ds.iter().filter_map(|d| d.left_queued).sum::<u64>();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} / {} / {} | {} | {} | {} | {left} | {} |\n",
            topology.label(),
            mode.label(),
            load_label(ds[0]),
            sum(|d| d.accepted),
            spread(ds.iter().map(|d| d.delivered_per_s)),
            ms(median(ds.iter().filter_map(|d| d.p50_ms))),
            ms(median(ds.iter().filter_map(|d| d.p99_ms))),
            ms(median(ds.iter().filter_map(|d| d.p999_ms))),
            sum(|d| d.lost),
            sum(|d| d.dead_lettered),
            sum(|d| d.duplicates),
            median(ds.iter().filter_map(|d| d.cpu_s_per_1000))
                .map_or_else(|| "–".to_owned(), |c| format!("{c:.3}")),
        ));
    }
    out
}

fn load_label(d: &Delivery) -> String {
    match (d.load.as_str(), d.fraction, d.offered_per_s) {
        ("rate", Some(f), Some(rate)) => format!("W2 {:.0}% = {rate:.0}/s offered", f * 100.0),
        ("drain", ..) => format!("W3 drain of {} (worker started after)", d.accepted),
        _ => format!("W2 closed c={}", d.concurrency),
    }
}

fn memory_table(report: &Report) -> String {
    let mut out = String::from(
        "| topology | mode | process | idle RSS MB | peak RSS MB |\n|---|---|---|---|---|\n",
    );
    for m in &report.memory {
        let idle = m.idle_rss_kib * 1024;
        let flag = if idle > IDLE_RSS_TARGET_BYTES {
            " (over the 30 MB target)"
        } else {
            ""
        };
        out.push_str(&format!(
            "| {} | {} | {} | {:.1}{flag} | {:.1} |\n",
            m.topology.label(),
            m.mode.label(),
            m.service,
            idle as f64 / 1e6,
            (m.peak_rss_kib * 1024) as f64 / 1e6,
        ));
    }
    out
}

/// What the smoke run must see: every run accepted and delivered something, nothing lost.
pub fn problems(report: &Report) -> Vec<String> {
    let mut problems = Vec::new();
    if report.deliveries.is_empty() {
        problems.push("end to end: nothing measured".to_owned());
    }
    for r in &report.ingress {
        let what = format!("W1 on {} ({})", r.topology.label(), r.mode.label());
        if r.accepted == 0 {
            problems.push(format!("{what}: nothing accepted"));
        }
        if let Some(lost) = r.lost.filter(|&l| l > 0) {
            problems.push(format!("{what}: {lost} accepted events not in the stream"));
        }
    }
    for d in &report.deliveries {
        let what = format!(
            "{} on {} ({})",
            load_label(d),
            d.topology.label(),
            d.mode.label()
        );
        if d.delivered == 0 {
            problems.push(format!("{what}: nothing delivered"));
        }
        if d.lost > 0 {
            problems.push(format!(
                "{what}: {} of {} accepted events lost ({} still queued)",
                d.lost,
                d.accepted,
                d.left_queued
                    .map_or_else(|| "unknown".to_owned(), |l| l.to_string())
            ));
        }
    }
    problems
}
