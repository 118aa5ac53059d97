//! OTLP metrics and traces through the OpenTelemetry SDK, fed once per probe run from the
//! run's result, never per request: the engine only keeps bucket counts and a bounded set of
//! sampled request records, and this module turns them into instruments and spans afterwards.
//!
//! Each run is one trace: a root span `probe <name>`, a child span per open-model phase, and
//! the sampled client spans whose `traceparent` the target received. All spans are built
//! after the run with their real timestamps and the ids the engine already sent, so the SDK's
//! id generator is steered through [`PresetIds`].
//!
//! It must never hold a probe up: spans go to the SDK's batch processor behind an admission
//! budget of `span_queue_size` (beyond it they are dropped and counted), exports run on the
//! SDK's own threads against a small runtime owned here, and shutdown waits a bounded time.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::metrics::{Gauge, Histogram, MeterProvider};
use opentelemetry::trace::{
    Span, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler, SdkTracer,
    SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use prometheus_client::metrics::counter::Counter;

use super::otlp_export::{metric_exporter, span_exporter};
use super::otlp_tls::OtlpTls;
use crate::config::{OtlpConfig, ProbeConfig};
use crate::engine::recorder::{ClassicBuckets, REQUEST_BUCKETS_SECONDS};
use crate::engine::trace::random_id;
use crate::engine::{ErrorKind, TraceContext};
use crate::report::{ProbeResult, StepInfo};
use crate::verdict::Grade;

thread_local! {
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
    static NEXT_SPAN_ID: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// Ids for the next span built on this thread, when they were chosen beforehand (the run's
/// root span, the client spans whose ids went out in `traceparent`); random otherwise.
#[derive(Debug, Default)]
struct PresetIds(RandomIdGenerator);

impl IdGenerator for PresetIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.0.new_trace_id())
    }
    fn new_span_id(&self) -> SpanId {
        NEXT_SPAN_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.0.new_span_id())
    }
}

fn preset(trace: Option<TraceId>, span: SpanId) {
    NEXT_TRACE_ID.with(|c| c.set(trace));
    NEXT_SPAN_ID.with(|c| c.set(Some(span)));
}

/// The instruments fed after each run.
struct Instruments {
    request_duration: Histogram<f64>,
    grade: Gauge<i64>,
    success: Gauge<i64>,
    duration: Gauge<f64>,
}

/// The OTLP pipelines of the process. Dropping it stops the exporters' runtime.
pub struct Otlp {
    tracing: Option<(SdkTracerProvider, SdkTracer)>,
    metrics: Option<(SdkMeterProvider, Instruments)>,
    /// Spans handed to the SDK and not yet exported or failed.
    pending: Arc<AtomicUsize>,
    queue_size: usize,
    sample_ratio: f64,
    max_client_spans: u32,
    flush_timeout: Duration,
    dropped_traces: Counter,
    /// Where the exporters' network I/O runs; `None` once shut down.
    runtime: Option<tokio::runtime::Runtime>,
}

/// The resource: the SDK's detectors read `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`;
/// without a service name there, it is `plimsoll`.
fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let b = Resource::builder();
    if named {
        b.build()
    } else {
        b.with_service_name("plimsoll").build()
    }
}

impl Otlp {
    /// Starts the pipelines the configuration (or the standard variables) turn on; `None`
    /// when OTLP is off.
    pub fn start(
        cfg: &OtlpConfig,
        dropped_traces: Counter,
        dropped_metrics: Counter,
    ) -> Result<Option<Otlp>, String> {
        let env = |k: &str| std::env::var(k).ok();
        let (traces_on, metrics_on) = cfg.enabled_signals(env);
        if !traces_on && !metrics_on {
            return Ok(None);
        }
        let protocol = cfg.resolved_protocol(env);
        let tls = OtlpTls::load(cfg, env).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("plimsoll-otlp")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the OTLP runtime: {e}"))?;
        let handle = runtime.handle().clone();
        let resource = resource();
        let pending = Arc::new(AtomicUsize::new(0));
        let queue_size = cfg.span_queue_size as usize;
        let tracing = if traces_on {
            let exporter = span_exporter(
                cfg,
                &tls,
                protocol,
                &handle,
                pending.clone(),
                dropped_traces.clone(),
            )?;
            // The SDK's own queue is larger than the admission budget, so it never drops
            // silently: every drop happens (and is counted) in `admit`.
            let batch = BatchConfigBuilder::default()
                .with_max_queue_size(queue_size + 512)
                .with_max_export_batch_size(512)
                .with_scheduled_delay(Duration::from_secs(1))
                .build();
            let provider = SdkTracerProvider::builder()
                .with_span_processor(BatchSpanProcessor::new(exporter, batch))
                .with_sampler(Sampler::AlwaysOn)
                .with_id_generator(PresetIds::default())
                .with_resource(resource.clone())
                .build();
            let tracer = provider.tracer("plimsoll");
            Some((provider, tracer))
        } else {
            None
        };
        let metrics = if metrics_on {
            let exporter = metric_exporter(cfg, &tls, protocol, &handle, dropped_metrics)?;
            let reader = PeriodicReader::builder(exporter)
                .with_interval(cfg.metrics_interval.as_duration())
                .build();
            let provider = SdkMeterProvider::builder()
                .with_reader(reader)
                .with_resource(resource)
                .build();
            let meter = provider.meter("plimsoll");
            let instruments = Instruments {
                request_duration: meter
                    .f64_histogram("http.client.request.duration")
                    .with_unit("s")
                    .with_description("Duration of HTTP client requests")
                    .with_boundaries(REQUEST_BUCKETS_SECONDS.to_vec())
                    .build(),
                grade: meter
                    .i64_gauge("plimsoll.probe.grade")
                    .with_description("Last grade: 0 excellent, 1 good, 2 warning, 3 critical")
                    .build(),
                success: meter
                    .i64_gauge("plimsoll.probe.success")
                    .with_description("1 when the last run graded good or better")
                    .build(),
                duration: meter
                    .f64_gauge("plimsoll.probe.duration")
                    .with_unit("s")
                    .with_description("Length of the last run")
                    .build(),
            };
            Some((provider, instruments))
        } else {
            None
        };
        tracing::info!(
            protocol = ?protocol,
            endpoint = cfg.endpoint.as_deref().unwrap_or("from OTEL_EXPORTER_OTLP_*"),
            traces = traces_on,
            metrics = metrics_on,
            "OTLP export on"
        );
        Ok(Some(Otlp {
            tracing,
            metrics,
            pending,
            queue_size,
            sample_ratio: cfg.sample_ratio,
            max_client_spans: cfg.max_client_spans,
            flush_timeout: cfg.flush_timeout.as_duration(),
            dropped_traces,
            runtime: Some(runtime),
        }))
    }

    /// The trace of a run about to start (ids chosen now, so the engine can send them).
    pub fn begin_run(&self) -> Option<TraceContext> {
        self.tracing.as_ref()?;
        let mut rng = fastrand::Rng::new();
        Some(TraceContext {
            trace_id: random_id::<16>(&mut rng),
            parent_span_id: random_id::<8>(&mut rng),
            sample_ratio: self.sample_ratio,
            max_spans: self.max_client_spans,
        })
    }

    /// Takes up to `n` spans into the export budget; returns how many may be created.
    fn admit(&self, n: usize) -> usize {
        let mut granted = 0;
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                granted = n.min(self.queue_size.saturating_sub(p));
                Some(p + granted)
            });
        if granted < n {
            self.dropped_traces.inc_by((n - granted) as u64);
        }
        granted
    }

    /// Feeds a finished run to the instruments and, when it was traced, exports its spans.
    pub fn record_run(&self, probe: &ProbeConfig, r: &ProbeResult, trace: Option<&TraceContext>) {
        if let Some((_, m)) = &self.metrics {
            record_metrics(m, r);
        }
        if let (Some((_, tracer)), Some(t)) = (&self.tracing, trace) {
            self.export_spans(tracer, probe, r, t);
        }
    }

    fn export_spans(
        &self,
        tracer: &SdkTracer,
        probe: &ProbeConfig,
        r: &ProbeResult,
        t: &TraceContext,
    ) {
        let d = &r.detail;
        let phases = match &probe.spec {
            crate::config::ProbeSpec::Load(l) => &l.phases[..],
            _ => &[][..],
        };
        let wanted = 1 + phases.len() + d.fault_actions.len() + d.client_spans.len();
        let granted = self.admit(wanted);
        if granted == 0 {
            return;
        }
        let trace_id = TraceId::from_bytes(t.trace_id);
        let root_id = SpanId::from_bytes(t.parent_span_id);
        let length = Duration::from_secs_f64(r.duration_s.max(0.0));
        let start = d.started.unwrap_or_else(|| {
            SystemTime::now()
                .checked_sub(length)
                .unwrap_or(SystemTime::UNIX_EPOCH)
        });
        let end = start + length;

        let (requests, errors) = r.stats.as_ref().map_or((0, 0), |s| (s.requests, s.errors));
        preset(Some(trace_id), root_id);
        let mut root = tracer
            .span_builder(format!("probe {}", r.probe))
            .with_kind(SpanKind::Internal)
            .with_start_time(start)
            .with_attributes([
                KeyValue::new("plimsoll.probe", r.probe.clone()),
                KeyValue::new("plimsoll.kind", r.kind.as_str()),
                KeyValue::new("plimsoll.grade", r.grade.as_str()),
                KeyValue::new("plimsoll.requests", requests as i64),
                KeyValue::new("plimsoll.errors", errors as i64),
            ])
            .start_with_context(tracer, &Context::new());
        if r.grade == Grade::Critical {
            root.set_status(Status::error(r.notes.join("; ")));
        }
        // A regression alert that this run opened or cleared is an event of the run's span.
        for (metric, f) in r.regression.iter().flat_map(|b| &b.figures) {
            let Some(t) = &f.transition else { continue };
            let mut attributes = vec![
                KeyValue::new("plimsoll.metric", metric.clone()),
                KeyValue::new("plimsoll.regression.current", f.current),
            ];
            if let Some(b) = f.baseline {
                attributes.push(KeyValue::new("plimsoll.regression.baseline", b));
            }
            if let Some(x) = f.shift_ratio {
                attributes.push(KeyValue::new("plimsoll.regression.shift_ratio", x));
            }
            root.add_event_with_timestamp(format!("regression {t}"), end, attributes);
        }
        root.end_with_timestamp(end);

        let parent = Context::new().with_remote_span_context(SpanContext::new(
            trace_id,
            root_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ));
        let mut left = granted - 1;
        let mut at = start;
        for (i, ph) in phases.iter().enumerate().take(left) {
            let len = ph.duration.map_or(Duration::ZERO, |d| d.as_duration());
            let name = ph.name.clone().unwrap_or_else(|| format!("phase {i}"));
            let mut attrs = vec![
                KeyValue::new("plimsoll.probe", r.probe.clone()),
                KeyValue::new("plimsoll.phase.index", i as i64),
            ];
            if let Some(rate) = ph.rate {
                attrs.push(KeyValue::new("plimsoll.phase.rate", rate));
            }
            if let Some(b) = ph.burst {
                attrs.push(KeyValue::new("plimsoll.phase.burst", i64::from(b)));
            }
            // A run stopped early ends its phases where it ended.
            let (s, e) = (at.min(end), (at + len).min(end));
            preset(
                None,
                SpanId::from_bytes(random_id::<8>(&mut fastrand::Rng::new())),
            );
            let mut span = tracer
                .span_builder(name)
                .with_kind(SpanKind::Internal)
                .with_start_time(s)
                .with_attributes(attrs)
                .start_with_context(tracer, &parent);
            span.end_with_timestamp(e);
            at += len;
            left -= 1;
        }

        // Fault actions: one span per inject and per clear, before the client spans so a
        // tight export budget keeps them.
        for a in d.fault_actions.iter() {
            if left == 0 {
                break;
            }
            let mut attrs = vec![
                KeyValue::new("plimsoll.probe", r.probe.clone()),
                KeyValue::new("plimsoll.fault", a.fault.clone()),
                KeyValue::new("plimsoll.fault.step", a.step),
                KeyValue::new("plimsoll.fault.action", a.action.clone()),
                KeyValue::new("plimsoll.fault.ok", a.ok),
            ];
            if let Some(reason) = &a.clear_reason {
                attrs.push(KeyValue::new("plimsoll.fault.clear_reason", reason.clone()));
            }
            preset(
                None,
                SpanId::from_bytes(random_id::<8>(&mut fastrand::Rng::new())),
            );
            let mut span = tracer
                .span_builder(format!("fault {} {}", a.step, a.fault))
                .with_kind(SpanKind::Internal)
                .with_start_time(a.start)
                .with_attributes(attrs)
                .start_with_context(tracer, &parent);
            if !a.ok {
                span.set_status(Status::error(format!("{} did not succeed", a.action)));
            }
            span.end_with_timestamp(a.end);
            left -= 1;
        }

        for c in d.client_spans.iter().take(left) {
            let Some(step) = d.steps.get(c.step) else {
                continue;
            };
            let mut attrs = http_attributes(&r.probe, step, c.status, c.error);
            attrs.push(KeyValue::new("plimsoll.endpoint", step.name.clone()));
            let error = error_type(c.status, c.error);
            preset(None, SpanId::from_bytes(c.span_id));
            let mut span = tracer
                .span_builder(step.method.clone())
                .with_kind(SpanKind::Client)
                .with_start_time(c.start)
                .with_attributes(attrs)
                .start_with_context(tracer, &parent);
            if let Some(e) = error {
                span.set_status(Status::error(e));
            }
            span.end_with_timestamp(c.end);
        }
    }

    /// Exports what is left and stops the pipelines, waiting at most the flush timeout: a
    /// collector that is down must not hold up the daemon's exit.
    pub fn shutdown(&self) {
        let tracer = self.tracing.as_ref().map(|(p, _)| p.clone());
        let meter = self.metrics.as_ref().map(|(p, _)| p.clone());
        let timeout = self.flush_timeout;
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("plimsoll-otlp-flush".into())
            .spawn(move || {
                if let Some(p) = tracer {
                    let _ = p.shutdown_with_timeout(timeout);
                }
                if let Some(p) = meter {
                    let _ = p.shutdown_with_timeout(timeout);
                }
                let _ = tx.send(());
            });
        if spawned.is_ok() && rx.recv_timeout(timeout).is_err() {
            tracing::warn!(
                "OTLP: the last export did not finish within {timeout:?}; exiting without it"
            );
        }
    }
}

impl Drop for Otlp {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is forbidden inside the daemon's async context.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// `error.type` of a request per the HTTP client conventions: the status code of an error
/// response, else the engine's error kind.
fn error_type(status: Option<u16>, error: Option<ErrorKind>) -> Option<String> {
    match (status, error) {
        (_, None) => None,
        (Some(code), Some(ErrorKind::Status)) => Some(code.to_string()),
        (_, Some(k)) => Some(k.as_str().to_string()),
    }
}

/// The HTTP client conventions' attributes of a request, plus `plimsoll.probe`: the same on
/// the duration histogram and on client spans.
fn http_attributes(
    probe: &str,
    step: &StepInfo,
    status: Option<u16>,
    error: Option<ErrorKind>,
) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new("http.request.method", step.method.clone()),
        KeyValue::new("server.address", step.server_address.clone()),
        KeyValue::new("server.port", i64::from(step.server_port)),
        KeyValue::new("plimsoll.probe", probe.to_string()),
    ];
    if let Some(code) = status {
        attrs.push(KeyValue::new("http.response.status_code", i64::from(code)));
    }
    if let Some(e) = error_type(status, error) {
        attrs.push(KeyValue::new("error.type", e));
    }
    attrs
}

fn record_metrics(m: &Instruments, r: &ProbeResult) {
    let d = &r.detail;
    for s in &d.requests {
        let Some(step) = d.steps.get(s.step) else {
            continue;
        };
        let attrs = http_attributes(&r.probe, step, s.status, s.error);
        for (value, count) in replay_values(&s.buckets) {
            for _ in 0..count {
                m.request_duration.record(value, &attrs);
            }
        }
    }
    let attrs = [KeyValue::new("plimsoll.probe", r.probe.clone())];
    let good = matches!(r.grade, Grade::Excellent | Grade::Good);
    m.grade.record(super::grade_number(r.grade), &attrs);
    m.success.record(i64::from(good), &attrs);
    m.duration.record(r.duration_s, &attrs);
}

/// Values that reproduce a run's classic buckets in an SDK histogram with the same bounds:
/// one value per non-empty bucket and how many times to record it.
///
/// Counts are exact. The SDK only takes single observations, and the engine keeps only the
/// total sum, not each value, so the values are placed at the same relative position `t`
/// inside every bucket (`lower + t × width`), with `t` chosen so that the recorded sum equals
/// the true sum. Every true value lies inside its bucket, so such a `t` in [0, 1] exists,
/// except for the overflow bucket (above 30 s), whose width is taken as 30 s: there the sum
/// may be off.
fn replay_values(b: &ClassicBuckets) -> Vec<(f64, u64)> {
    let bounds = &REQUEST_BUCKETS_SECONDS;
    let last = bounds[bounds.len() - 1];
    let edges = |i: usize| -> (f64, f64) {
        let lo = if i == 0 { 0.0 } else { bounds[i - 1] };
        let hi = bounds.get(i).copied().unwrap_or(last * 2.0);
        (lo, hi)
    };
    let (mut base, mut width) = (0.0, 0.0);
    for (i, n) in b.counts.iter().enumerate() {
        let (lo, hi) = edges(i);
        base += *n as f64 * lo;
        width += *n as f64 * (hi - lo);
    }
    let sum = b.sum_micros as f64 / 1e6;
    let t = if width > 0.0 {
        ((sum - base) / width).clamp(0.0, 1.0)
    } else {
        0.0
    };
    b.counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| {
            let (lo, hi) = edges(i);
            // Bucket upper bounds are inclusive: a value on `lo` would land one bucket down.
            let v = (lo + t * (hi - lo)).max(lo + (hi - lo) * 1e-9);
            (v, *n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replayed_buckets_keep_counts_and_sum() {
        let mut b = ClassicBuckets::default();
        // 3 requests of 2 ms, 1 of 40 ms, 1 of 3 s.
        b.counts[1] = 3;
        b.counts[5] = 1;
        b.counts[11] = 1;
        b.sum_micros = 3 * 2_000 + 40_000 + 3_000_000;
        let v = replay_values(&b);
        assert_eq!(v.iter().map(|(_, n)| n).sum::<u64>(), 5);
        let sum: f64 = v.iter().map(|(x, n)| x * *n as f64).sum();
        assert!((sum - 3.046).abs() < 1e-9, "{sum}");
        for ((x, _), i) in v.iter().zip([1usize, 5, 11]) {
            let lo = if i == 0 {
                0.0
            } else {
                REQUEST_BUCKETS_SECONDS[i - 1]
            };
            assert!(
                *x > lo && *x <= REQUEST_BUCKETS_SECONDS[i],
                "{x} not in bucket {i}"
            );
        }
    }

    #[test]
    fn error_type_follows_the_http_conventions() {
        assert_eq!(error_type(Some(200), None), None);
        assert_eq!(
            error_type(Some(503), Some(ErrorKind::Status)).as_deref(),
            Some("503")
        );
        assert_eq!(
            error_type(None, Some(ErrorKind::Timeout)).as_deref(),
            Some("timeout")
        );
    }

    #[test]
    fn preset_ids_are_used_once_then_random() {
        let g = PresetIds::default();
        let span = SpanId::from_bytes([9; 8]);
        preset(Some(TraceId::from_bytes([3; 16])), span);
        assert_eq!(g.new_trace_id(), TraceId::from_bytes([3; 16]));
        assert_eq!(g.new_span_id(), span);
        assert_ne!(g.new_span_id(), span);
    }
}
