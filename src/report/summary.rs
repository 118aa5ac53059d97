//! The terminal summary: one table row per probe run, then what went wrong, in words.

use super::terminal::escape_name;
use std::fmt::Write as _;

use super::ProbeResult;

/// One line of a race's round counts and timing.
fn race_line(r: &super::RaceStats) -> String {
    let mut line = format!(
        "{} rounds of {} claimants: {} single winner, {} multiple winners, {} no winner; \
         send spread p50 {:.3} ms, p99 {:.3} ms; race time p99 {:.1} ms",
        r.rounds,
        r.claimants,
        r.single_winner,
        r.multiple_winners,
        r.no_winner,
        r.send_spread_ms.p50,
        r.send_spread_ms.p99,
        r.race_time_ms.p99
    );
    if let Some(m) = r.verify_mismatches {
        let _ = write!(
            line,
            "; {m} round(s) where the database disagreed with the API"
        );
    }
    for (kind, sample) in &r.error_samples {
        let n = r.claims_by_outcome.get(kind).copied().unwrap_or(0);
        let _ = write!(line, "\n  {kind} ({n} claim(s)): {sample}");
    }
    line
}

/// One line of a pub/sub run's deliveries.
fn pubsub_line(p: &super::PubsubStats) -> String {
    let mut line = format!(
        "{} message(s) to {}/{} subscriber(s): {} of {} delivered ({:.3}%), {} lost, {} \
         duplicate(s), {} out of order; delivery p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        p.published,
        p.connected,
        p.subscribers,
        p.delivered,
        p.expected_deliveries,
        p.delivery_ratio * 100.0,
        p.lost,
        p.duplicates,
        p.out_of_order,
        p.latency_ms.p50,
        p.latency_ms.p95,
        p.latency_ms.p99
    );
    if let Some(e) = &p.subscriber_error {
        let _ = write!(line, "\n  subscriber: {e}");
    }
    line
}

/// Seed 002's benchmark table: one row per operation.
fn operations_table(s: &super::Stats) -> String {
    let w = s
        .endpoints
        .keys()
        .map(|k| k.len())
        .max()
        .unwrap_or(9)
        .max(9);
    let mut t = format!(
        "{:<w$}  {:>7}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}  {:>6}",
        "operation",
        "samples",
        "min ms",
        "max ms",
        "mean ms",
        "median",
        "p95 ms",
        "p99 ms",
        "errors"
    );
    for (name, e) in &s.endpoints {
        let l = &e.latency_ms;
        let _ = write!(
            t,
            "\n  {:<w$}  {:>7}  {:>8.2}  {:>8.2}  {:>8.2}  {:>8.2}  {:>8.2}  {:>8.2}  {:>6}",
            escape_name(name),
            e.requests,
            l.min,
            l.max,
            l.mean,
            l.p50,
            l.p95,
            l.p99,
            e.errors
        );
    }
    t
}

/// Renders the summary table of several results.
pub fn render(results: &[ProbeResult]) -> String {
    let mut out = String::new();
    let name_w = results
        .iter()
        .map(|r| escape_name(&r.probe).chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "{:<name_w$}  {:<9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>16}",
        "probe", "grade", "requests", "rps", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    for r in results {
        match &r.stats {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "{:<name_w$}  {:<9}  {:>9}  {:>9.1}  {:>9.2}  {:>9.2}  {:>9.2}  {:>16}",
                    escape_name(&r.probe),
                    r.grade.as_str(),
                    s.requests,
                    s.rps,
                    s.latency_ms.p50,
                    s.latency_ms.p95,
                    s.latency_ms.p99,
                    format!("{} ({:.2}%)", s.errors, s.error_rate * 100.0),
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{:<name_w$}  {:<9}",
                    escape_name(&r.probe),
                    r.grade.as_str()
                );
            }
        }
    }
    for r in results {
        let mut lines = Vec::new();
        if let Some(s) = &r.stats {
            for (kind, n) in &s.errors_by_kind {
                let sample = s.error_samples.get(kind).map(String::as_str).unwrap_or("");
                lines.push(format!("{n} {kind} error(s): {sample}"));
            }
            if s.iterations.dropped > 0 {
                lines.push(format!(
                    "{} planned iteration(s) could not start: the in-flight cap was reached",
                    s.iterations.dropped
                ));
            }
        }
        if let Some(race) = r.race() {
            lines.push(race_line(race));
        }
        if let Some(p) = r.pubsub() {
            lines.push(pubsub_line(p));
        }
        if r.kind == crate::config::Kind::Benchmark {
            if let Some(s) = &r.stats {
                lines.push(operations_table(s));
            }
        }
        for t in &r.thresholds {
            if t.grade >= crate::verdict::Grade::Warning {
                lines.push(format!("{} = {} is {}", t.metric, t.value, t.grade));
            }
        }
        lines.extend(r.notes.iter().cloned());
        if !lines.is_empty() {
            let _ = writeln!(out, "\n{}:", escape_name(&r.probe));
            for l in lines {
                let _ = writeln!(out, "  {l}");
            }
        }
    }
    out
}
