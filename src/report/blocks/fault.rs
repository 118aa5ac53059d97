//! The `fault` block: each fault's timeline of windows, detection and recovery, and its
//! summary.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Figures of a fault probe (DESIGN.md's `fault` block).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultStats {
    pub faults: Vec<FaultFigures>,
}

/// One fault under load: when it was injected and cleared, how fast it showed and went,
/// and the windows of the whole timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultFigures {
    pub name: String,
    /// RFC 3339; absent when the run ended before the inject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_at: Option<String>,
    /// From the start of the run to the inject and to the clear's return, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_s: Option<f64>,
    /// `ended`, `failed`, `timed_out`, `stopped`, `dropped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_reason: Option<String>,
    /// What was injected and what cleared it, in words, and whether each worked.
    pub inject_action: String,
    pub inject_ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_action: Option<String>,
    pub clear_ok: bool,
    /// Inject → start of the first window out of the steady band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect_s: Option<f64>,
    /// Clear → start of the first stretch of `recovery_stretch` whose windows are all in the
    /// steady band; absent when it never came back within the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_s: Option<f64>,
    /// Error ratio per phase (before the inject, inject → clear, clear → end).
    pub error_rate: PhaseFigures,
    /// p99 latency of the successful requests per phase, ms (live buckets: within 25 %).
    pub p99_ms: PhaseFigures,
    /// Success ratio from the recovery to the end of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate_after_recovery: Option<f64>,
    /// The band a window must be in to count as steady.
    pub steady: SteadyBand,
    /// Highest backlog read from the inject to the end, and the time from the clear until
    /// it was back to its level before the inject (the median of the readings before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_peak: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_drain_s: Option<f64>,
    /// Every backlog reading: (seconds from the start, value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backlog: Vec<BacklogSample>,
    pub window_ms: f64,
    /// The timeline, window by window.
    pub windows: Vec<FaultWindow>,
}

/// A figure before, during and after a fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseFigures {
    pub before: f64,
    pub during: f64,
    pub after: f64,
}

/// The steady band computed from the windows before the inject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SteadyBand {
    pub min_success_ratio: f64,
    pub max_p99_ms: f64,
}

/// One measuring window of a fault probe's timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// `before`, `during` or `after`.
    pub phase: String,
    pub requests: u64,
    pub errors: u64,
    /// 1 when the window had no request.
    pub success_ratio: f64,
    /// p99 of the window's successful requests, ms; absent when none succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    pub steady: bool,
}

/// One backlog reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BacklogSample {
    pub at_s: f64,
    pub value: f64,
}

/// Each fault of a fault run: detection, recovery and the error rate per phase, then a
/// one-character-per-window strip of the timeline (`.` steady, `x` out of the band; `|`
/// marks the inject and the clear).
pub(super) fn summary(f: &FaultStats) -> String {
    let secs = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |s| format!("{s:.2} s"));
    let mut out = Vec::new();
    for x in &f.faults {
        let mut line = format!(
            "fault {}: detected after {}, recovered {} after the clear; error rate before \
             {:.2}%, during {:.2}%, after {:.2}%; p99 before {:.1} ms, during {:.1} ms, \
             after {:.1} ms",
            x.name,
            secs(x.detect_s),
            secs(x.recovery_s),
            x.error_rate.before * 100.0,
            x.error_rate.during * 100.0,
            x.error_rate.after * 100.0,
            x.p99_ms.before,
            x.p99_ms.during,
            x.p99_ms.after,
        );
        if let Some(r) = x.success_rate_after_recovery {
            let _ = write!(line, "; success after recovery {:.2}%", r * 100.0);
        }
        if let Some(p) = x.backlog_peak {
            let _ = write!(
                line,
                "; backlog peak {p}, drained {}",
                secs(x.backlog_drain_s)
            );
        }
        let _ = write!(
            line,
            "\n  inject: {} ({}); clear: {} ({}, {})",
            x.inject_action,
            if x.inject_ok { "ok" } else { "FAILED" },
            x.clear_action.as_deref().unwrap_or("—"),
            if x.clear_ok { "ok" } else { "FAILED" },
            x.clear_reason.as_deref().unwrap_or("not cleared"),
        );
        let mut strip = String::from("\n  ");
        let mut phase = "before";
        for w in &x.windows {
            if w.phase != phase {
                strip.push('|');
                phase = &w.phase;
            }
            strip.push(if w.steady { '.' } else { 'x' });
        }
        line.push_str(&strip);
        out.push(line);
    }
    out.join("\n")
}
