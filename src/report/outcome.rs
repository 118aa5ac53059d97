//! The result's request statistics built from an engine outcome: the one conversion every
//! HTTP kind (load, benchmark, and those to come) shares.
//!
//! This module formats what the engine measured; it never measures and never grades.

use std::collections::BTreeMap;

use super::{
    error_rate_and_rps, round3, status_class_label, EndpointStats, IterationStats, LatencySummary,
    OutcomeSeries, RunDetail, Stats, StepInfo,
};
use crate::engine::{ErrorKind, LoadOutcome};

/// The run at the grain of the HTTP client conventions, for OTLP.
pub fn detail_of(o: &LoadOutcome) -> RunDetail {
    let steps = o
        .step_names
        .iter()
        .zip(&o.step_methods)
        .zip(&o.step_servers)
        .map(|((name, method), (host, port))| StepInfo {
            name: name.clone(),
            method: method.clone(),
            server_address: host.clone(),
            server_port: *port,
        })
        .collect();
    let requests = o
        .recorder
        .steps
        .iter()
        .enumerate()
        .flat_map(|(step, s)| {
            s.outcomes.iter().map(move |x| OutcomeSeries {
                step,
                status: x.status,
                error: x.error,
                buckets: x.buckets,
            })
        })
        .collect();
    RunDetail {
        started: Some(o.started_at),
        steps,
        requests,
        client_spans: o.client_spans.clone(),
        fault_actions: Vec::new(),
        latency: Some(o.recorder.total_latency()),
    }
}

fn kinds_map(counts: &[u64]) -> BTreeMap<String, u64> {
    ErrorKind::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.as_str().to_string(), *n))
        .collect()
}

pub fn stats_of(o: &LoadOutcome) -> Stats {
    let rec = &o.recorder;
    let requests = rec.requests();
    let by_kind = rec.errors_by_kind();
    let errors: u64 = by_kind.iter().sum();
    let secs = o.elapsed.as_secs_f64();
    let mut status_classes = BTreeMap::new();
    for s in &rec.steps {
        for (i, n) in s.status_classes.iter().enumerate() {
            if *n > 0 {
                *status_classes
                    .entry(status_class_label(i).to_string())
                    .or_insert(0) += n;
            }
        }
    }
    // Exact codes from the per-outcome buckets (which hold every request).
    let mut status_codes = BTreeMap::new();
    for s in &rec.steps {
        for x in &s.outcomes {
            if let Some(code) = x.status {
                *status_codes.entry(code.to_string()).or_insert(0) += x.buckets.count();
            }
        }
    }
    let mut endpoints = BTreeMap::new();
    for (name, s) in o.step_names.iter().zip(&rec.steps) {
        // Two steps may share a name; their numbers then add up under it.
        let e: &mut EndpointStats = endpoints.entry(name.clone()).or_default();
        e.requests += s.requests;
        e.errors += s.error_count();
        e.latency_ms = LatencySummary::from_micros(&s.latency);
        for (k, n) in kinds_map(&s.errors) {
            *e.errors_by_kind.entry(k).or_insert(0) += n;
        }
    }
    let error_samples = ErrorKind::ALL
        .iter()
        .zip(&rec.error_samples)
        .filter_map(|(k, m)| m.as_ref().map(|m| (k.as_str().to_string(), m.clone())))
        .collect();
    let (error_rate, rps) = error_rate_and_rps(requests, errors, secs);
    Stats {
        requests,
        errors,
        error_rate,
        rps,
        offered_rps: o.planned.map(|(_, r)| round3(r)),
        latency_ms: LatencySummary::from_micros(&rec.total_latency()),
        service_time_ms: LatencySummary::from_micros(&rec.total_service()),
        failed_latency_ms: {
            let failed = rec.total_failed();
            (!failed.is_empty()).then(|| LatencySummary::from_micros(&failed))
        },
        errors_by_kind: kinds_map(&by_kind),
        error_samples,
        status_classes,
        status_codes,
        iterations: IterationStats {
            started: rec.iterations_started,
            completed: rec.iterations_completed,
            failed: rec.iterations_failed,
            dropped: rec.dropped,
            planned: o.planned.map(|(n, _)| n),
            abandoned: rec.abandoned,
            rate_per_s: (o.step_names.len() > 1 && secs > 0.0)
                .then(|| round3((rec.iterations_completed + rec.iterations_failed) as f64 / secs)),
        },
        send_lag_ms: o
            .planned
            .map(|_| LatencySummary::from_micros(&rec.send_lag)),
        bytes_received: rec.steps.iter().map(|s| s.bytes).sum(),
        endpoints,
    }
}
