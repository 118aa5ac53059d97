//! Exact percentiles of each probe's last run (or of each operation of it), exposed as one
//! summary per label set.
//!
//! The quantile samples of one probe must stay together and in order (the OpenMetrics
//! grouping rule), which a `Family` keyed by (probe, quantile) cannot promise (it iterates a
//! hash map); so this one metric holds every probe's quantiles and writes them in order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::label::Escaped;

/// The `quantile` label values, in the order they are written.
pub const QUANTILE_LABELS: [&str; 6] = ["0.5", "0.9", "0.95", "0.99", "0.999", "1"];

/// Label values (the probe's name first, then e.g. an operation's) → seconds at each of
/// [`QUANTILE_LABELS`]. Clones share the same values.
#[derive(Debug, Clone)]
pub struct LastRunQuantiles {
    /// Names of the labels before `quantile`; the first is always `probe`.
    labels: &'static [&'static str],
    values: Arc<Mutex<BTreeMap<Vec<String>, [f64; 6]>>>,
}

impl Default for LastRunQuantiles {
    fn default() -> Self {
        LastRunQuantiles::with_labels(&["probe"])
    }
}

impl LastRunQuantiles {
    /// Quantiles keyed by these labels (`["probe", "operation"]`).
    pub fn with_labels(labels: &'static [&'static str]) -> Self {
        debug_assert_eq!(labels.first(), Some(&"probe"));
        LastRunQuantiles {
            labels,
            values: Arc::default(),
        }
    }

    pub fn set(&self, probe: &str, seconds: [f64; 6]) {
        self.set_keyed(vec![probe.to_string()], seconds);
    }

    /// Sets the quantiles of one key: as many values as labels, the probe's name first.
    pub fn set_keyed(&self, key: Vec<String>, seconds: [f64; 6]) {
        debug_assert_eq!(key.len(), self.labels.len());
        self.lock().insert(key, seconds);
    }

    /// Drops every key of the probe.
    pub fn remove(&self, probe: &str) {
        self.lock()
            .retain(|k, _| k.first().map(String::as_str) != Some(probe));
    }

    /// Drops the keys of the probe that `keep` refuses (an operation that left the config).
    pub fn retain_probe(&self, probe: &str, keep: impl Fn(&[String]) -> bool) {
        self.lock()
            .retain(|k, _| k.first().map(String::as_str) != Some(probe) || keep(k));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<String>, [f64; 6]>> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TypedMetric for LastRunQuantiles {
    // Written as a gauge by the library; the exposition's TYPE line is rewritten to
    // `summary` (see `Telemetry::encode_openmetrics`), which the library has no type for.
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for LastRunQuantiles {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (key, values) in self.lock().iter() {
            let mut labels: Vec<(&str, Escaped)> = self
                .labels
                .iter()
                .zip(key)
                .map(|(n, v)| (*n, Escaped(v)))
                .collect();
            labels.push(("quantile", Escaped("")));
            for (q, v) in QUANTILE_LABELS.iter().zip(values) {
                if let Some(last) = labels.last_mut() {
                    last.1 = Escaped(q);
                }
                encoder.encode_family(&labels)?.encode_gauge(v)?;
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}
