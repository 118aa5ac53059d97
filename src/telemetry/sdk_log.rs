//! The OpenTelemetry libraries' own log lines, held to one per message a minute.
//!
//! The SDK and the OTLP exporter log through `tracing` (targets `opentelemetry*`): while a
//! collector is down or hangs, every failed batch and every metric interval adds a line, and
//! the daemon's log fills with the same error. Our own exporter wrapper already reports
//! failures once a minute (`otlp_export`); this filter gives the libraries' lines the same
//! bound: each distinct message (its callsite) passes once a minute, the rest are counted and
//! the count is named in our next report. It must not hold back any other target's lines.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tracing::callsite::Identifier;
use tracing::Metadata;
use tracing_subscriber::layer::{Context, Filter};

/// Shortest time between two lines of the same library message.
const WINDOW_S: u64 = 60;

/// Whether a log line comes from the OpenTelemetry libraries.
pub fn is_sdk_target(target: &str) -> bool {
    target.starts_with("opentelemetry")
}

/// When each library message last passed, and how many were held back since our last report.
struct Gate {
    last_passed: Mutex<HashMap<Identifier, u64>>,
    held: AtomicU64,
}

static GATE: std::sync::LazyLock<Gate> = std::sync::LazyLock::new(|| Gate {
    last_passed: Mutex::new(HashMap::new()),
    held: AtomicU64::new(0),
});

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Decides for one line of a library message at `now`: pass it, or hold it back (counted).
/// The map holds one entry per callsite, so it is bounded by the libraries' code.
fn admit(callsite: Identifier, now: u64) -> bool {
    let mut last = GATE.last_passed.lock().unwrap_or_else(|e| e.into_inner());
    match last.get(&callsite) {
        Some(t) if now < t + WINDOW_S => {
            GATE.held.fetch_add(1, Ordering::Relaxed);
            false
        }
        _ => {
            last.insert(callsite, now);
            true
        }
    }
}

/// Library lines held back since the last call (for our own once-a-minute report).
pub fn take_held() -> u64 {
    GATE.held.swap(0, Ordering::Relaxed)
}

/// The `tracing` filter: lines of other targets pass untouched.
#[derive(Debug, Clone, Copy, Default)]
pub struct SdkLogFilter;

impl<S> Filter<S> for SdkLogFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        // Spans (and anything that is not an event) are not lines; only events are limited.
        if !meta.is_event() || !is_sdk_target(meta.target()) {
            return true;
        }
        admit(meta.callsite(), now_s())
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if meta.is_event() && is_sdk_target(meta.target()) {
            // Asked every time, so that the gate sees every line.
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::always()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_message_passes_once_a_minute_and_the_rest_are_counted() {
        struct Site(#[allow(dead_code)] u8);
        impl tracing::Callsite for Site {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        // Not zero-sized, so that the two statics have two addresses.
        static A: Site = Site(1);
        static B: Site = Site(2);
        let a = || Identifier(&A);
        let b = || Identifier(&B);
        let _ = take_held();
        let t = 1_000_000;
        assert!(admit(a(), t));
        assert!(!admit(a(), t + 1));
        assert!(!admit(a(), t + 59));
        // Another message has its own minute.
        assert!(admit(b(), t + 1));
        assert!(admit(a(), t + 60));
        assert!(take_held() >= 2);
        assert!(is_sdk_target("opentelemetry_sdk"));
        assert!(is_sdk_target("opentelemetry-otlp"));
        assert!(!is_sdk_target("plimsoll::daemon"));
    }
}
