//! The terminal summary: one table row per probe run, then what went wrong, in words.

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

/// A capacity search: its verdict in one line, the steps table, and a text plot of p99
/// against the offered rate with the breaking point marked.
fn capacity_lines(c: &super::CapacityStats) -> String {
    let mut t = format!(
        "breaking point {} req/s{}{}; search: {} steps, {} requests, {:.1} s",
        c.breaking_point_rps,
        c.knee_rps
            .map(|k| format!(", knee {k} req/s"))
            .unwrap_or_default(),
        c.first_failure_rps
            .map(|f| format!(", first failure {f} req/s"))
            .unwrap_or_default(),
        c.search.steps,
        c.search.requests,
        c.search.duration_s
    );
    let _ = write!(
        t,
        "\n  {:>9}  {:>9}  {:>8}  {:>8}  {:>8}  {:>7}  {:>7}  {:<6}  verdict",
        "offered", "achieved", "p50 ms", "p95 ms", "p99 ms", "errors", "dropped", "step"
    );
    for s in &c.steps {
        let verdict = if s.passed {
            "pass".to_string()
        } else {
            format!("FAIL ({})", s.failed_on.join(", "))
        };
        let _ = write!(
            t,
            "\n  {:>9.1}  {:>9.1}  {:>8.2}  {:>8.2}  {:>8.2}  {:>6.2}%  {:>7}  {:<6}  {}",
            s.offered_rps,
            s.achieved_rps,
            s.latency_ms.p50,
            s.latency_ms.p95,
            s.latency_ms.p99,
            s.error_rate * 100.0,
            s.dropped,
            s.phase,
            verdict
        );
    }
    let mut by_rate: Vec<&super::CapacityStep> = c.steps.iter().collect();
    by_rate.sort_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps));
    let best = by_rate
        .iter()
        .filter(|s| s.passed)
        .map(|s| s.offered_rps)
        .next_back();
    // Bars on a log scale: a queue's p99 grows by orders of magnitude past the knee.
    let top = by_rate
        .iter()
        .map(|s| s.latency_ms.p99)
        .fold(c.limits.p99_ms, f64::max)
        .max(1.0);
    const WIDTH: f64 = 40.0;
    let bar = |ms: f64| ((ms.max(0.1) * 10.0).ln() / (top * 10.0).ln() * WIDTH).round() as usize;
    let limit_at = bar(c.limits.p99_ms);
    let _ = write!(
        t,
        "\n  p99 by offered rate (log scale, '|' = the {} ms limit):",
        c.limits.p99_ms
    );
    for s in by_rate {
        let n = bar(s.latency_ms.p99);
        let mut line: Vec<char> = std::iter::repeat_n(if s.passed { '#' } else { 'x' }, n)
            .chain(std::iter::repeat_n(' ', (limit_at + 1).saturating_sub(n)))
            .collect();
        if limit_at < line.len() && line[limit_at] == ' ' {
            line[limit_at] = '|';
        }
        let mark = if s.passed && Some(s.offered_rps) == best {
            "  <- breaking point"
        } else {
            ""
        };
        let _ = write!(
            t,
            "\n  {:>9.1} {} {:.1} ms{mark}",
            s.offered_rps,
            line.into_iter().collect::<String>().trim_end(),
            s.latency_ms.p99
        );
    }
    t
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
            name, e.requests, l.min, l.max, l.mean, l.p50, l.p95, l.p99, e.errors
        );
    }
    t
}

/// Renders the summary table of several results.
pub fn render(results: &[ProbeResult]) -> String {
    let mut out = String::new();
    let name_w = results
        .iter()
        .map(|r| r.probe.len())
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
                    r.probe,
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
                let _ = writeln!(out, "{:<name_w$}  {:<9}", r.probe, r.grade.as_str());
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
        if let Some(c) = r.capacity() {
            lines.push(capacity_lines(c));
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
            let _ = writeln!(out, "\n{}:", r.probe);
            for l in lines {
                let _ = writeln!(out, "  {l}");
            }
        }
    }
    out
}
