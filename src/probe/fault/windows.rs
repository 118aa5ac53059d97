//! The fault probe's windows and figures: the counters by planned send time turned into
//! reads at every window boundary, the steady band, the time to detect, the recovery and
//! the error rates before, during and after (the rules are in the parent module's doc).

use std::time::{Instant, SystemTime};

use super::P99_FLOOR_MS;
use crate::config::FaultProbeConfig;
use crate::engine::{live_quantile_ms, SendWindowCounts, LIVE_LATENCY_BUCKETS};
use crate::fault::FaultRecord;
use crate::report::{
    rfc3339, round3, BacklogSample, FaultFigures, FaultWindow, PhaseFigures, SteadyBand,
};

/// The counters summed over the windows before a boundary: `at_s` seconds from the run's
/// start. A window is the difference of two consecutive reads.
#[derive(Clone)]
pub(super) struct Read {
    at_s: f64,
    requests: u64,
    errors: u64,
    latency: [u64; LIVE_LATENCY_BUCKETS],
}

/// The reads at every window boundary, from the windows by planned send time.
pub(super) fn reads_of(windows: &[SendWindowCounts], window_s: f64) -> Vec<Read> {
    let mut acc = Read {
        at_s: 0.0,
        requests: 0,
        errors: 0,
        latency: [0; LIVE_LATENCY_BUCKETS],
    };
    let mut reads = vec![acc.clone()];
    for (k, w) in windows.iter().enumerate() {
        acc.at_s = (k + 1) as f64 * window_s;
        acc.requests += w.requests;
        acc.errors += w.errors;
        for (a, b) in acc.latency.iter_mut().zip(&w.latency) {
            *a += b;
        }
        reads.push(acc.clone());
    }
    reads
}

/// The median of some readings (the mean of the middle two for an even count); `None` for
/// none.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Latency percentile of live bucket counts, ms (the bucket's upper bound).
fn percentile_ms(buckets: &[u64; LIVE_LATENCY_BUCKETS], q: f64) -> Option<f64> {
    live_quantile_ms(buckets, q).map(round3)
}

fn diff(
    a: &[u64; LIVE_LATENCY_BUCKETS],
    b: &[u64; LIVE_LATENCY_BUCKETS],
) -> [u64; LIVE_LATENCY_BUCKETS] {
    std::array::from_fn(|i| b[i].saturating_sub(a[i]))
}

/// Totals over a span of reads (requests, errors, latency buckets).
fn span(reads: &[Read], from: usize, to: usize) -> (u64, u64, [u64; LIVE_LATENCY_BUCKETS]) {
    if to <= from || to >= reads.len() {
        return (0, 0, [0; LIVE_LATENCY_BUCKETS]);
    }
    let (a, b) = (&reads[from], &reads[to]);
    (
        b.requests - a.requests,
        b.errors - a.errors,
        diff(&a.latency, &b.latency),
    )
}

fn ratio(errors: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        round3_small(errors as f64 / requests as f64)
    }
}

/// Rounds a ratio to six decimals (a 0.1 % error rate keeps its digits).
fn round3_small(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// The windows and the figures of the fault.
#[allow(clippy::too_many_arguments)]
pub(super) fn figures(
    c: &FaultProbeConfig,
    started_at: SystemTime,
    t0: Instant,
    reads: &[Read],
    inject_at: Option<Instant>,
    clear_at: Option<Instant>,
    record: Option<FaultRecord>,
    backlog: Vec<BacklogSample>,
) -> FaultFigures {
    let secs = |i: Instant| i.duration_since(t0).as_secs_f64();
    let inject_s = inject_at.map(secs);
    let clear_s = clear_at.map(secs);
    let phase_of = |start: f64| match (inject_s, clear_s) {
        (Some(i), _) if start < i => "before",
        (None, _) => "before",
        (Some(_), Some(c)) if start >= c => "after",
        _ => "during",
    };
    // Reads index boundaries; the phases' spans by read index.
    // The phases' figures take whole windows only: a window holding the inject or the
    // clear is in none of them.
    let last = reads.len().saturating_sub(1);
    let first_at_or_after = |t: Option<f64>| {
        t.map_or(last, |t| {
            reads.iter().position(|r| r.at_s >= t).unwrap_or(last)
        })
    };
    let last_at_or_before = |t: Option<f64>| {
        t.map_or(last, |t| {
            reads.iter().rposition(|r| r.at_s <= t).unwrap_or(0)
        })
    };
    let i_inject = first_at_or_after(inject_s);
    let i_during_end = last_at_or_before(clear_s).max(i_inject);
    let i_clear = first_at_or_after(clear_s);
    // The steady band from the windows wholly before the inject (the first left out when
    // there are others: it opens the connections; the last too when two others remain: its
    // requests count where they were sent, and those still in flight at the inject, which
    // is due at a window boundary, are the fault's first victims).
    let before_end = reads
        .iter()
        .rposition(|r| inject_s.is_none_or(|i| r.at_s <= i))
        .unwrap_or(0);
    let band_from = if before_end >= 2 { 1 } else { 0 };
    let band_end = if before_end >= band_from + 3 {
        before_end - 1
    } else {
        before_end
    };
    let (breq, berr, blat) = span(reads, band_from, band_end);
    let before_success = if breq == 0 {
        1.0
    } else {
        1.0 - berr as f64 / breq as f64
    };
    let before_p99 = percentile_ms(&blat, 0.99).unwrap_or(0.0);
    let steady = SteadyBand {
        min_success_ratio: round3_small(c.min_success_ratio.min(before_success)),
        max_p99_ms: round3((before_p99 * c.p99_factor).max(before_p99 + P99_FLOOR_MS)),
    };
    let mut windows = Vec::new();
    for k in 0..last {
        let (req, err, lat) = span(reads, k, k + 1);
        let start = reads[k].at_s;
        let p99 = percentile_ms(&lat, 0.99);
        let success = if req == 0 {
            1.0
        } else {
            1.0 - err as f64 / req as f64
        };
        let ok = req > 0
            && success >= steady.min_success_ratio
            && p99.is_some_and(|p| p <= steady.max_p99_ms);
        windows.push(FaultWindow {
            start_s: round3(start),
            phase: phase_of(start).to_string(),
            requests: req,
            errors: err,
            success_ratio: round3_small(success),
            p99_ms: p99,
            steady: ok,
        });
    }
    let window_s = c.window.as_duration().as_secs_f64();
    let ends = |k: usize| reads[k + 1].at_s;
    let detect_s = inject_s.and_then(|i| {
        (0..windows.len())
            .find(|&k| ends(k) > i && !windows[k].steady)
            .map(|k| round3((reads[k].at_s - i).max(0.0)))
    });
    let need = ((c.recovery_stretch.as_duration().as_secs_f64() / window_s) - 1e-9).ceil() as usize;
    let mut recovered_at = None;
    if let Some(cl) = clear_s {
        let mut run = 0;
        for (k, w) in windows.iter().enumerate() {
            if ends(k) <= cl {
                continue;
            }
            if w.steady {
                run += 1;
                if run >= need.max(1) {
                    recovered_at = Some(k + 1 - run);
                    break;
                }
            } else {
                run = 0;
            }
        }
    }
    let recovery_s = recovered_at
        .zip(clear_s)
        .map(|(k, cl)| round3((reads[k].at_s - cl).max(0.0)));
    let success_rate_after_recovery = recovered_at.map(|k| {
        let (r, e, _) = span(reads, k, last);
        round3_small(1.0 - ratio(e, r))
    });
    let (r0, e0, l0) = span(reads, band_from, i_inject.min(band_end.max(band_from)));
    let (r1, e1, l1) = span(reads, i_inject, i_during_end);
    let (r2, e2, l2) = span(reads, i_clear, last);
    let p = |l: &[u64; LIVE_LATENCY_BUCKETS]| percentile_ms(l, 0.99).unwrap_or(0.0);
    // Backlog: the peak from the inject on, and the drain back to the level before it. That
    // level is the median of the readings before the inject: a queue that is worked in
    // batches stands at a sawtooth level, and one reading taken just after a batch (or
    // before the load began) would ask the drain to reach a low the steady queue never holds.
    let base = median(
        backlog
            .iter()
            .filter(|s| inject_s.is_some_and(|i| s.at_s < i))
            .map(|s| s.value),
    );
    let during: Vec<&BacklogSample> = backlog
        .iter()
        .filter(|s| inject_s.is_some_and(|i| s.at_s >= i))
        .collect();
    let backlog_peak = during.iter().map(|s| s.value).reduce(f64::max);
    let backlog_drain_s = clear_s.and_then(|cl| {
        let level = base.unwrap_or(0.0);
        backlog
            .iter()
            .find(|s| s.at_s >= cl && s.value <= level)
            .map(|s| round3((s.at_s - cl).max(0.0)))
    });
    let record = record.unwrap_or_default();
    FaultFigures {
        name: c.name.clone(),
        injected_at: inject_at.map(|i| rfc3339(started_at + i.duration_since(t0))),
        cleared_at: clear_at.map(|i| rfc3339(started_at + i.duration_since(t0))),
        inject_s: inject_s.map(round3),
        clear_s: clear_s.map(round3),
        clear_reason: record
            .clear_reason
            .and_then(|r| serde_json::to_value(r).ok())
            .and_then(|v| v.as_str().map(String::from)),
        inject_action: record
            .inject
            .as_ref()
            .map_or_else(|| "not injected".into(), |r| r.action.clone()),
        inject_ok: record.inject.as_ref().is_some_and(|r| r.ok),
        clear_action: record.clear.as_ref().map(|r| r.action.clone()),
        clear_ok: record.clear.as_ref().is_some_and(|r| r.ok),
        detect_s,
        recovery_s,
        error_rate: PhaseFigures {
            before: ratio(e0, r0),
            during: ratio(e1, r1),
            after: ratio(e2, r2),
        },
        p99_ms: PhaseFigures {
            before: p(&l0),
            during: p(&l1),
            after: p(&l2),
        },
        success_rate_after_recovery,
        steady,
        backlog_peak,
        backlog_drain_s,
        backlog,
        window_ms: round3(window_s * 1000.0),
        windows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the drain's reference was the last reading before the inject, and a
    /// sawtooth queue read just after a batch (0 among readings of 3 to 10) left a backlog
    /// back at its usual level reported as never drained.
    #[test]
    fn the_backlog_reference_is_the_median_before_the_inject() {
        let before = [0.0, 6.0, 7.0, 10.0, 9.0, 0.0];
        assert_eq!(median(before.into_iter()), Some(6.5));
        assert_eq!(median([3.0, f64::NAN, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn percentiles_come_from_the_live_buckets() {
        let mut b = [0u64; LIVE_LATENCY_BUCKETS];
        b[crate::engine::live_bucket(5_000)] = 99;
        b[crate::engine::live_bucket(400_000)] = 1;
        let p99 = percentile_ms(&b, 0.99).unwrap();
        assert!((5.0..=6.3).contains(&p99), "{p99}");
        assert!(percentile_ms(&b, 1.0).unwrap() >= 400.0);
    }
}
