//! Exact percentiles of each probe's last run, exposed as one summary per probe.
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

/// Probe name → seconds at each of [`QUANTILE_LABELS`]. Clones share the same values.
#[derive(Debug, Default, Clone)]
pub struct LastRunQuantiles {
    values: Arc<Mutex<BTreeMap<String, [f64; 6]>>>,
}

impl LastRunQuantiles {
    pub fn set(&self, probe: &str, seconds: [f64; 6]) {
        self.lock().insert(probe.to_string(), seconds);
    }

    pub fn remove(&self, probe: &str) {
        self.lock().remove(probe);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, [f64; 6]>> {
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
        for (probe, values) in self.lock().iter() {
            for (q, v) in QUANTILE_LABELS.iter().zip(values) {
                encoder
                    .encode_family(&[("probe", Escaped(probe)), ("quantile", Escaped(q))])?
                    .encode_gauge(v)?;
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
