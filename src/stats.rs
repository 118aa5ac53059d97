//! The figures of a measured run: request counts, error ratios and latency percentiles.
//!
//! The ground floor of the result: the verdict grades these figures and the report carries
//! them, so this module imports neither (`report` re-exports everything here).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Request statistics of a load-generating run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    /// Ratio, 0 to 1.
    pub error_rate: f64,
    /// Achieved requests per second over the run.
    pub rps: f64,
    /// Planned arrivals per second (open model); absent for the closed model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_rps: Option<f64>,
    /// Successful requests only (a failed request's latency is in `failed_latency_ms`): from
    /// the planned send time in the open model; from the actual send in the closed model.
    pub latency_ms: LatencySummary,
    /// Successful requests only: from the actual send to the end of the response, whatever
    /// the model. Beside `latency_ms` it shows the coordinated-omission gap.
    pub service_time_ms: LatencySummary,
    /// Failed requests (an error of any kind), reported apart so that a target that fails
    /// fast does not look fast; absent when none failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_latency_ms: Option<LatencySummary>,
    /// Exact status codes (`"200"`, `"503"`), beside the classes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status_codes: BTreeMap<String, u64>,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// The first message seen of each error kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub error_samples: BTreeMap<String, String>,
    /// Responses by status class (`2xx`, …); `none` counts requests without a response.
    pub status_classes: BTreeMap<String, u64>,
    pub iterations: IterationStats,
    /// How late the generator sent behind the plan (open model): its own health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag_ms: Option<LatencySummary>,
    pub bytes_received: u64,
    /// Per step (`endpoint` label).
    pub endpoints: BTreeMap<String, EndpointStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IterationStats {
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    /// Planned iterations that could not start: the in-flight cap was reached.
    pub dropped: u64,
    /// Planned iterations (open model); up to the stop when the run was stopped early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<u64>,
    /// Exchanges in flight when the run was stopped: abandoned unanswered, counted neither as
    /// completed nor as failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub abandoned: u64,
    /// Iterations (completed or failed) per second, when an iteration is more than one
    /// request (steps or a flow): what the open model's plan is compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EndpointStats {
    pub requests: u64,
    pub errors: u64,
    pub latency_ms: LatencySummary,
    pub errors_by_kind: BTreeMap<String, u64>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    /// Percentiles of a histogram recorded in microseconds.
    pub fn from_micros(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| round3(us as f64 / 1000.0);
        LatencySummary {
            min: ms(h.min()),
            mean: round3(h.mean() / 1000.0),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// A run's error ratio and achieved requests per second (rounded to three decimals); zero
/// where there is nothing to divide by.
pub fn error_rate_and_rps(requests: u64, errors: u64, elapsed_s: f64) -> (f64, f64) {
    let error_rate = if requests > 0 {
        errors as f64 / requests as f64
    } else {
        0.0
    };
    let rps = if elapsed_s > 0.0 {
        round3(requests as f64 / elapsed_s)
    } else {
        0.0
    };
    (error_rate, rps)
}

pub(crate) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
