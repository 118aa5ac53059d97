//! Client-span sampling on the hot path: which requests carry a W3C `traceparent` header, and
//! the fixed-capacity record of those requests that the telemetry module later turns into spans.
//!
//! The engine does not talk to OpenTelemetry: it decides, formats the header and keeps plain
//! records. An unsampled request costs one random number and a compare; the ready
//! pre-serialized request bytes stay its fast path. The span buffer is allocated once per
//! worker at its full capacity and never grows, so sampling never allocates per request.

use std::time::{Instant, SystemTime};

use super::http::ErrorKind;

/// The run's trace, handed to the engine by whoever starts the run (the daemon).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceContext {
    /// The run's trace id (W3C, 16 bytes, not all zero).
    pub trace_id: [u8; 16],
    /// The span that client spans are children of (the run's root span).
    pub parent_span_id: [u8; 8],
    /// Fraction of requests traced, 0 to 1.
    pub sample_ratio: f64,
    /// Most client spans kept for the whole run.
    pub max_spans: u32,
}

/// One sampled request, as measured.
#[derive(Debug, Clone, Copy)]
pub struct ClientSpan {
    /// The span id sent in the request's `traceparent`.
    pub span_id: [u8; 8],
    /// Index of the step (into the load's steps).
    pub step: usize,
    /// When the request was actually sent.
    pub start: SystemTime,
    /// When its response ended (or it failed).
    pub end: SystemTime,
    pub status: Option<u16>,
    pub error: Option<ErrorKind>,
}

/// A sampled request in flight: its span id and the header value carrying it.
pub struct Sampled {
    pub span_id: [u8; 8],
    /// `00-<trace id>-<span id>-01`.
    pub traceparent: [u8; TRACEPARENT_LEN],
}

/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;

/// Formats a version-00 `traceparent` value for a sampled span.
pub fn traceparent(trace_id: &[u8; 16], span_id: &[u8; 8]) -> [u8; TRACEPARENT_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; TRACEPARENT_LEN];
    out[..3].copy_from_slice(b"00-");
    let mut i = 3;
    for b in trace_id {
        out[i] = HEX[usize::from(b >> 4)];
        out[i + 1] = HEX[usize::from(b & 0xf)];
        i += 2;
    }
    out[i] = b'-';
    i += 1;
    for b in span_id {
        out[i] = HEX[usize::from(b >> 4)];
        out[i + 1] = HEX[usize::from(b & 0xf)];
        i += 2;
    }
    out[i..].copy_from_slice(b"-01");
    out
}

/// A random id that is not all zero (an all-zero id is invalid in W3C trace context).
pub fn random_id<const N: usize>(rng: &mut fastrand::Rng) -> [u8; N] {
    loop {
        let mut id = [0u8; N];
        for chunk in id.chunks_mut(8) {
            let r = rng.u64(..).to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        if id.iter().any(|b| *b != 0) {
            return id;
        }
    }
}

/// One worker's sampler and span buffer. Single-threaded, owned by the worker.
pub struct Sampler {
    trace_id: [u8; 16],
    /// A request is sampled when a uniform `u64` falls below this.
    threshold: u64,
    /// Ratio 1 samples everything (the threshold cannot express it).
    always: bool,
    rng: fastrand::Rng,
    spans: Vec<(Instant, Instant, ClientSpan)>,
}

impl Sampler {
    /// The sampler of worker `id` of `workers`, or `None` when nothing is to be traced.
    pub fn new(ctx: &TraceContext, id: usize, workers: usize) -> Option<Self> {
        let cap = (ctx.max_spans as usize).div_ceil(workers.max(1));
        // NaN and negative ratios trace nothing.
        if ctx.sample_ratio.is_nan() || ctx.sample_ratio <= 0.0 || cap == 0 {
            return None;
        }
        let ratio = ctx.sample_ratio.min(1.0);
        Some(Sampler {
            trace_id: ctx.trace_id,
            threshold: (ratio * u64::MAX as f64) as u64,
            always: ratio >= 1.0,
            rng: fastrand::Rng::with_seed(fastrand::u64(..) ^ id as u64),
            spans: Vec::with_capacity(cap),
        })
    }

    /// Decides whether the next request is traced. Once the buffer is full nothing more is
    /// (its span could not be kept, so its header would point at a span that never arrives).
    #[inline]
    pub fn sample(&mut self) -> Option<Sampled> {
        if self.spans.len() == self.spans.capacity() {
            return None;
        }
        if !self.always && self.rng.u64(..) >= self.threshold {
            return None;
        }
        let span_id = random_id::<8>(&mut self.rng);
        Some(Sampled {
            span_id,
            traceparent: traceparent(&self.trace_id, &span_id),
        })
    }

    /// Keeps a sampled request's record; never grows the buffer.
    #[inline]
    pub fn record(&mut self, sent: Instant, end: Instant, span: ClientSpan) {
        if self.spans.len() < self.spans.capacity() {
            self.spans.push((sent, end, span));
        }
    }

    /// The records with wall-clock times: `anchor` is the wall-clock time of instant `start`.
    pub fn finish(self, start: Instant, anchor: SystemTime) -> Vec<ClientSpan> {
        let wall = |t: Instant| match t.checked_duration_since(start) {
            Some(d) => anchor + d,
            None => anchor - start.duration_since(t),
        };
        self.spans
            .into_iter()
            .map(|(sent, end, mut s)| {
                s.start = wall(sent);
                s.end = wall(end);
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_w3c_version_00() {
        let trace: [u8; 16] = [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36,
        ];
        let span: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
        assert_eq!(
            std::str::from_utf8(&traceparent(&trace, &span)).unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    fn ctx(ratio: f64, max: u32) -> TraceContext {
        TraceContext {
            trace_id: [7; 16],
            parent_span_id: [1; 8],
            sample_ratio: ratio,
            max_spans: max,
        }
    }

    #[test]
    fn sampling_follows_the_ratio_and_stops_at_the_cap() {
        assert!(Sampler::new(&ctx(0.0, 100), 0, 1).is_none());
        assert!(Sampler::new(&ctx(0.5, 0), 0, 1).is_none());

        let mut s = Sampler::new(&ctx(0.1, 1_000_000), 0, 1).unwrap();
        let n = (0..100_000).filter(|_| s.sample().is_some()).count();
        assert!((9_000..11_000).contains(&n), "{n} of 100000 at ratio 0.1");

        // Two workers share a cap of 3: two spans each at most.
        let mut s = Sampler::new(&ctx(1.0, 3), 1, 2).unwrap();
        let now = Instant::now();
        let mut kept = 0;
        for _ in 0..10 {
            if let Some(x) = s.sample() {
                assert_ne!(x.span_id, [0; 8]);
                let header = std::str::from_utf8(&x.traceparent).unwrap().to_string();
                assert!(header.starts_with("00-07070707"), "{header}");
                let span = ClientSpan {
                    span_id: x.span_id,
                    step: 0,
                    start: SystemTime::UNIX_EPOCH,
                    end: SystemTime::UNIX_EPOCH,
                    status: Some(200),
                    error: None,
                };
                s.record(now, now, span);
                kept += 1;
            }
        }
        assert_eq!(kept, 2);
        let anchor = SystemTime::now();
        let spans = s.finish(now, anchor);
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].start, anchor);
    }
}
