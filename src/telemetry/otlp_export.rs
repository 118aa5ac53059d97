//! The OTLP exporters behind the SDK's processors: built for the configured transport, run on
//! a runtime of their own, and wrapped so that every span or metric export that fails is
//! counted in `plimsoll_otlp_dropped_total` (the SDK itself only logs).
//!
//! Nothing here runs on a probe's thread: the SDK's batch span processor and periodic metric
//! reader each call their exporter from a thread of their own.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry_otlp::{
    MetricExporter, Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as SdkSpanExporter};
use prometheus_client::metrics::counter::Counter;

use super::otlp_tls::OtlpTls;
use crate::config::{OtlpConfig, OtlpProtocol};

/// Polls a future inside a tokio runtime's context. The SDK drives exports with a plain
/// executor on its own threads, while the gRPC and HTTP clients need tokio's reactor and
/// timers: entering the handle on every poll gives them that.
struct InRuntime<F> {
    handle: tokio::runtime::Handle,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _entered = this.handle.enter();
        this.fut.as_mut().poll(cx)
    }
}

fn in_runtime<F: Future>(handle: &tokio::runtime::Handle, fut: F) -> InRuntime<F> {
    InRuntime {
        handle: handle.clone(),
        fut: Box::pin(fut),
    }
}

/// Logs export failures at most once a minute: a collector that is down would otherwise
/// fill the log.
#[derive(Debug, Default)]
struct FailureLog {
    last_unix_s: AtomicU64,
}

impl FailureLog {
    fn note(&self, signal: &str, lost: u64, why: &dyn std::fmt::Display) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_unix_s.load(Ordering::Relaxed);
        if now >= last + 60
            && self
                .last_unix_s
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let held = super::sdk_log::take_held();
            tracing::warn!(
                signal,
                lost,
                library_lines_held = held,
                "OTLP export failed (counted in plimsoll_otlp_dropped_total; next report in a minute at the earliest; the OpenTelemetry library's own repeated lines are held to one a minute each): {why}"
            );
        }
    }
}

/// The span exporter as the batch processor sees it.
#[derive(Debug)]
pub(super) struct CountingSpanExporter {
    inner: SpanExporter,
    handle: tokio::runtime::Handle,
    /// Spans handed to the SDK and not yet exported or failed (see `Otlp::admit`).
    pending: Arc<AtomicUsize>,
    dropped: Counter,
    failures: FailureLog,
}

impl SdkSpanExporter for CountingSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let r = in_runtime(&self.handle, self.inner.export(batch)).await;
        self.pending.fetch_sub(n, Ordering::AcqRel);
        if let Err(e) = &r {
            self.dropped.inc_by(n as u64);
            self.failures.note("traces", n as u64, e);
        }
        r
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The metric exporter as the periodic reader sees it.
pub(super) struct CountingMetricExporter {
    inner: MetricExporter,
    handle: tokio::runtime::Handle,
    dropped: Counter,
    failures: FailureLog,
}

impl PushMetricExporter for CountingMetricExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let r = in_runtime(&self.handle, self.inner.export(metrics)).await;
        if let Err(e) = &r {
            // One per metric stream of the failed export: what a dashboard would miss.
            let lost: usize = metrics.scope_metrics().map(|s| s.metrics().count()).sum();
            self.dropped.inc_by(lost as u64);
            self.failures.note("metrics", lost as u64, e);
        }
        r
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// Signal paths of OTLP over HTTP, added to a base endpoint from the configuration (the
/// standard variables get them from the exporter itself).
fn http_signal_url(base: &str, signal: &str) -> String {
    format!("{}/v1/{signal}", base.trim_end_matches('/'))
}

fn headers_of(cfg: &OtlpConfig) -> Vec<(String, String)> {
    cfg.headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.expose().to_string()))
        .collect()
}

fn tonic_metadata(cfg: &OtlpConfig) -> opentelemetry_otlp::tonic_types::metadata::MetadataMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in headers_of(cfg) {
        // Validation has checked names and values.
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(&v),
        ) {
            h.insert(k, v);
        }
    }
    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(h)
}

/// Time limit of one export over HTTP: the table's, else `OTEL_EXPORTER_OTLP_TIMEOUT`
/// (milliseconds), else 10 s, as the exporter itself resolves it.
fn http_timeout(cfg: &OtlpConfig) -> Duration {
    cfg.timeout.map(|t| t.as_duration()).unwrap_or_else(|| {
        std::env::var("OTEL_EXPORTER_OTLP_TIMEOUT")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map_or(Duration::from_secs(10), Duration::from_millis)
    })
}

/// Builds an OTLP exporter (`SpanExporter` or `MetricExporter`, whose builders share their
/// methods but no trait) for the transport, adding the signal's path to an HTTP base URL.
/// Both transports get the TLS settings; they apply to `https://` endpoints only.
macro_rules! otlp_exporter {
    ($kind:ident, $cfg:expr, $tls:expr, $protocol:expr, $signal:literal) => {{
        let cfg: &OtlpConfig = $cfg;
        let tls: &OtlpTls = $tls;
        match $protocol {
            OtlpProtocol::Grpc => {
                let mut b = $kind::builder()
                    .with_tonic()
                    .with_tls_config(tls.tonic_config())
                    .with_metadata(tonic_metadata(cfg));
                if let Some(e) = &cfg.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                if let Some(t) = cfg.timeout {
                    b = b.with_timeout(t.as_duration());
                }
                b.build()
            }
            OtlpProtocol::HttpProtobuf => {
                let client = tls
                    .http_client(http_timeout(cfg))
                    .map_err(|e| format!("cannot build the OTLP {} exporter: {e}", $signal))?;
                let mut b = $kind::builder()
                    .with_http()
                    .with_http_client(client)
                    .with_protocol(Protocol::HttpBinary)
                    .with_headers(headers_of(cfg).into_iter().collect());
                if let Some(e) = &cfg.endpoint {
                    b = b.with_endpoint(http_signal_url(e, $signal));
                }
                if let Some(t) = cfg.timeout {
                    b = b.with_timeout(t.as_duration());
                }
                b.build()
            }
        }
        .map_err(|e| format!("cannot build the OTLP {} exporter: {e}", $signal))
    }};
}

/// Builds the span exporter inside `handle`'s context: the gRPC channel starts its
/// background task on it.
pub(super) fn span_exporter(
    cfg: &OtlpConfig,
    tls: &OtlpTls,
    protocol: OtlpProtocol,
    handle: &tokio::runtime::Handle,
    pending: Arc<AtomicUsize>,
    dropped: Counter,
) -> Result<CountingSpanExporter, String> {
    let _entered = handle.enter();
    Ok(CountingSpanExporter {
        inner: otlp_exporter!(SpanExporter, cfg, tls, protocol, "traces")?,
        handle: handle.clone(),
        pending,
        dropped,
        failures: FailureLog::default(),
    })
}

/// Builds the metric exporter (cumulative temporality, the SDK's default).
pub(super) fn metric_exporter(
    cfg: &OtlpConfig,
    tls: &OtlpTls,
    protocol: OtlpProtocol,
    handle: &tokio::runtime::Handle,
    dropped: Counter,
) -> Result<CountingMetricExporter, String> {
    let _entered = handle.enter();
    Ok(CountingMetricExporter {
        inner: otlp_exporter!(MetricExporter, cfg, tls, protocol, "metrics")?,
        handle: handle.clone(),
        dropped,
        failures: FailureLog::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_signal_paths_join_the_base() {
        assert_eq!(
            http_signal_url("http://127.0.0.1:4318/", "traces"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_signal_url("http://c:4318/otlp", "metrics"),
            "http://c:4318/otlp/v1/metrics"
        );
    }
}
