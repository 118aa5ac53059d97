//! The terminal summary: one table row per probe run, then each run in detail — why it got its
//! grade, latency of successful requests from the planned send beside service time (the
//! coordinated-omission gap), failed requests apart, status codes, errors by kind with a
//! sample, per-endpoint rows, and every threshold with ✓/✗ and its band.
//!
//! This module formats a finished result; it never measures, grades or decides colour by
//! itself (the caller says whether the output is a terminal).

use super::terminal::escape_name;
use std::fmt::Write as _;

use super::{LatencySummary, ProbeResult, Stats};
use crate::verdict::Grade;

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

/// The run against its stored baseline: a line per figure in an open regression or that this
/// run opened or cleared (baseline, current, shift, state), and one line while the series
/// still warms up. A figure steadily within its baseline says nothing.
fn regression_lines(b: &super::RegressionBlock) -> Vec<String> {
    let mut lines = Vec::new();
    let warming = b
        .figures
        .values()
        .filter(|f| f.state == "warmup")
        .map(|f| f.runs)
        .max();
    if let Some(runs) = warming {
        lines.push(if b.mode == "percentage" {
            "baseline    no pinned value yet for some figures".to_string()
        } else {
            format!("baseline    warming up ({runs}/{} runs)", b.min_runs)
        });
    }
    for (name, f) in &b.figures {
        if f.state != "open" && f.transition.is_none() {
            continue;
        }
        let number = |v: f64| {
            if v.abs() >= 100.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.3}")
            }
        };
        let mut line = format!(
            "regression  {name:<12} baseline {}  current {}",
            f.baseline.map_or_else(|| "-".to_string(), number),
            number(f.current)
        );
        if let Some(x) = f.shift_ratio {
            let _ = write!(line, "  shift {:+.1} %", x * 100.0);
        }
        let _ = write!(line, "  {}", f.state);
        if let Some(t) = &f.transition {
            let _ = write!(line, " ({t} by this run)");
        }
        lines.push(line);
    }
    lines
}

/// Renders the summary of several results, without colour.
pub fn render(results: &[ProbeResult]) -> String {
    render_with(results, false)
}

/// The grade word, coloured when `colour` is on (green good, yellow warning, red critical).
fn grade_word(g: Grade, colour: bool, width: usize) -> String {
    let word = format!("{:<width$}", g.as_str());
    if !colour {
        return word;
    }
    let code = match g {
        Grade::Excellent | Grade::Good => "32",
        Grade::Warning => "33",
        Grade::Critical => "31",
    };
    format!("\x1b[{code}m{word}\x1b[0m")
}

fn latency_row(l: &LatencySummary) -> String {
    format!(
        "min {:.2}  mean {:.2}  p50 {:.2}  p90 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2} ms",
        l.min, l.mean, l.p50, l.p90, l.p95, l.p99, l.max
    )
}

/// The detail lines of a run's request statistics.
fn stats_lines(r: &ProbeResult, s: &Stats, lines: &mut Vec<String>) {
    let mut req = format!(
        "requests    {} in {:.1} s ({:.1}/s",
        s.requests, r.duration_s, s.rps
    );
    if let Some(o) = s.offered_rps {
        let _ = write!(req, ", planned {o:.1}/s");
    }
    if let Some(i) = s.iterations.rate_per_s {
        let _ = write!(req, "; {i:.1} iterations/s");
    }
    let _ = write!(
        req,
        "), {} failed ({:.2} %)",
        s.errors,
        s.error_rate * 100.0
    );
    lines.push(req);
    if s.requests > s.errors {
        let open = s.offered_rps.is_some();
        let from = if open {
            "from the planned send"
        } else {
            "from the send"
        };
        lines.push(format!(
            "latency     {}   ({from}, successful requests)",
            latency_row(&s.latency_ms)
        ));
        lines.push(format!(
            "service     {}   (from the actual send)",
            latency_row(&s.service_time_ms)
        ));
        if open {
            let gap = s.latency_ms.p99 - s.service_time_ms.p99;
            lines.push(format!(
                "queueing    p99 {:.2} ms from the plan vs {:.2} ms of service: {:.2} ms spent \
                 waiting behind the plan (what coordinated omission would hide)",
                s.latency_ms.p99, s.service_time_ms.p99, gap
            ));
        }
    }
    if let Some(f) = &s.failed_latency_ms {
        lines.push(format!(
            "failed      {}   (failed requests, apart)",
            latency_row(f)
        ));
    }
    let codes = if s.status_codes.is_empty() {
        &s.status_classes
    } else {
        &s.status_codes
    };
    if !codes.is_empty() {
        let list: Vec<String> = codes.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
        let none = s.status_classes.get("none").copied().unwrap_or(0);
        let mut t = format!("status      {}", list.join(", "));
        if none > 0 && !s.status_codes.is_empty() {
            let _ = write!(t, ", no response ×{none}");
        }
        lines.push(t);
    }
    for (kind, n) in &s.errors_by_kind {
        let sample = s.error_samples.get(kind).map(String::as_str).unwrap_or("");
        lines.push(format!("error       {n} {kind} error(s): {sample}"));
    }
    if s.iterations.dropped > 0 {
        lines.push(format!(
            "dropped     {} planned iteration(s) could not start: the in-flight cap was reached",
            s.iterations.dropped
        ));
    }
    if s.endpoints.len() > 1 && !r.kind.grades_each_endpoint() {
        let w = s
            .endpoints
            .keys()
            .map(|k| k.len())
            .max()
            .unwrap_or(8)
            .max(8);
        lines.push(format!(
            "endpoints   {:<w$}  {:>8}  {:>7}  {:>9}  {:>9}  {:>9}",
            "endpoint", "requests", "errors", "p50 ms", "p95 ms", "p99 ms"
        ));
        for (name, e) in &s.endpoints {
            lines.push(format!(
                "            {:<w$}  {:>8}  {:>7}  {:>9.2}  {:>9.2}  {:>9.2}",
                name, e.requests, e.errors, e.latency_ms.p50, e.latency_ms.p95, e.latency_ms.p99
            ));
        }
    }
}

/// Renders the summary: a table row per run, then each run's details.
pub fn render_with(results: &[ProbeResult], colour: bool) -> String {
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
                    "{:<name_w$}  {}  {:>9}  {:>9.1}  {:>9.2}  {:>9.2}  {:>9.2}  {:>16}",
                    escape_name(&r.probe),
                    grade_word(r.grade, colour, 9),
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
                    "{:<name_w$}  {}",
                    escape_name(&r.probe),
                    grade_word(r.grade, colour, 9)
                );
            }
        }
    }
    for r in results {
        let mut lines = Vec::new();
        if !r.grade_reason.is_empty() {
            lines.push(format!("why         {}", r.grade_reason));
        }
        if let Some(s) = &r.stats {
            stats_lines(r, s, &mut lines);
        }
        if let Some(block) = &r.block {
            lines.push(block.summary());
        }
        if r.kind.grades_each_endpoint() {
            if let Some(s) = &r.stats {
                lines.push(operations_table(s));
            }
        }
        for t in &r.thresholds {
            let ok = t.grade <= Grade::Good;
            let mark = match (ok, colour) {
                (true, true) => "\x1b[32m✓\x1b[0m",
                (true, false) => "✓",
                (false, true) => "\x1b[31m✗\x1b[0m",
                (false, false) => "✗",
            };
            let decides = if t.decides {
                "  ← decides the grade"
            } else {
                ""
            };
            lines.push(format!(
                "threshold   {mark} {:<16} {:>14}  {}{decides}",
                t.metric,
                t.value_text(),
                t.band_text()
            ));
        }
        if let Some(b) = &r.regression {
            lines.extend(regression_lines(b));
        }
        for n in &r.notes {
            // The forced reasons open the notes and are already the grade's reason.
            if !r.grade_reason.ends_with(n.as_str()) {
                lines.push(format!("note        {n}"));
            }
        }
        if !lines.is_empty() {
            let _ = writeln!(out, "\n{}:", escape_name(&r.probe));
            for l in lines {
                let _ = writeln!(out, "  {l}");
            }
        }
    }
    out
}
