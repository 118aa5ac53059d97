//! A classic Prometheus histogram that takes whole runs at once.
//!
//! `prometheus_client`'s own histogram observes one value at a time; the engine instead
//! keeps its own bucket counts per worker and hands over a run's totals at the end, so this
//! type adds bucket counts in bulk and encodes them with the library's encoder.

use std::sync::Mutex;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use crate::engine::recorder::{ClassicBuckets, REQUEST_BUCKETS_SECONDS};

/// Cumulative-over-time bucket counts of one label set.
#[derive(Debug, Default)]
pub struct BucketHistogram {
    inner: Mutex<ClassicBuckets>,
}

impl BucketHistogram {
    /// Adds a run's bucket counts.
    pub fn add(&self, b: &ClassicBuckets) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .merge(b);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> ClassicBuckets {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TypedMetric for BucketHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for BucketHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let b = self.snapshot();
        // The library's encoder accumulates the counts itself and writes `+Inf` for f64::MAX.
        let mut buckets = [(0.0, 0u64); REQUEST_BUCKETS_SECONDS.len() + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            let bound = REQUEST_BUCKETS_SECONDS.get(i).copied().unwrap_or(f64::MAX);
            *slot = (bound, b.counts[i]);
        }
        encoder.encode_histogram::<NoLabelSet>(b.sum_micros as f64 / 1e6, b.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}
