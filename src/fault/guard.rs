//! [`FaultGuard`]: an injected fault that is always cleared — explicitly when the run ends,
//! fails, times out or is stopped, and from `Drop` when the run is cancelled or unwinds —
//! and records both actions in a [`FaultLog`] the caller keeps.
//!
//! The guard does not decide how long a fault lasts or what load runs meanwhile (the fault
//! probe does); it only guarantees the clear and its record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::action::{ActionOutcome, ActionRecord, FaultAction};
use super::proxy::ProxyHandle;
use super::toxic::Toxic;

/// How often [`FaultGuard::hold`] looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(10);

/// What a guard injects and clears.
// Built once per fault and moved into its guard: the size of the action variant costs
// nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Fault {
    /// Set toxics on a proxy listener; the clear puts back the toxics it had before.
    Toxics {
        proxy: ProxyHandle,
        listener: String,
        toxics: Vec<Toxic>,
    },
    /// Run an external action; the clear runs `clear`, if any (a restart that recovers by
    /// itself has none).
    Action {
        inject: FaultAction,
        clear: Option<FaultAction>,
    },
}

/// Why a fault was cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClearReason {
    /// The hold ended as planned.
    Ended,
    /// The run failed before the hold ended.
    Failed,
    /// The run went past its time limit.
    TimedOut,
    /// The stop flag was raised (daemon shutdown, Ctrl-C).
    Stopped,
    /// The guard was dropped without an explicit clear: the run was cancelled or unwound.
    Dropped,
}

/// The record of one fault: what was injected, what cleared it, and why.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultRecord {
    pub name: String,
    pub inject: Option<ActionRecord>,
    pub clear: Option<ActionRecord>,
    pub clear_reason: Option<ClearReason>,
}

impl FaultRecord {
    /// Whether the clear ran (whatever its outcome).
    pub fn cleared(&self) -> bool {
        self.clear.is_some()
    }
}

/// Shared view of a fault's record: still readable after the guard was dropped.
#[derive(Debug, Clone, Default)]
pub struct FaultLog(Arc<Mutex<FaultRecord>>);

impl FaultLog {
    pub fn snapshot(&self) -> FaultRecord {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut FaultRecord)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// How [`FaultGuard::hold`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    Elapsed,
    Stopped,
}

/// What the clear must undo.
enum Armed {
    Toxics {
        proxy: ProxyHandle,
        listener: String,
        previous: Vec<Toxic>,
    },
    Action(Option<FaultAction>),
}

/// An injected fault, cleared exactly once: by [`clear`](FaultGuard::clear) or on drop.
pub struct FaultGuard {
    armed: Option<Armed>,
    log: FaultLog,
}

impl FaultGuard {
    /// Injects the fault and records it. The guard is armed even when the inject failed, so
    /// a half-applied fault (a stop command that timed out) is still cleared.
    pub async fn inject(name: &str, fault: Fault, stop: Option<&AtomicBool>) -> FaultGuard {
        let log = FaultLog::default();
        log.update(|r| r.name = name.to_string());
        let (armed, record) = match fault {
            Fault::Toxics {
                proxy,
                listener,
                toxics,
            } => {
                let what = format!(
                    "toxics {listener}: {}",
                    toxics
                        .iter()
                        .map(Toxic::describe)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let previous = proxy.toxics(&listener).unwrap_or_default();
                let record = match proxy.set_toxics(&listener, toxics) {
                    Ok(()) => ActionRecord::instant(what, ActionOutcome::Applied, true),
                    Err(e) => ActionRecord::instant(
                        what,
                        ActionOutcome::Failed {
                            error: e.to_string(),
                        },
                        false,
                    ),
                };
                (
                    Armed::Toxics {
                        proxy,
                        listener,
                        previous,
                    },
                    record,
                )
            }
            Fault::Action { inject, clear } => {
                tracing::info!(fault = name, "injecting: {}", inject.describe());
                let record = inject.run(stop, None).await;
                (Armed::Action(clear), record)
            }
        };
        log.update(|r| r.inject = Some(record));
        FaultGuard {
            armed: Some(armed),
            log,
        }
    }

    /// The fault's record, also readable after the guard is gone.
    pub fn log(&self) -> FaultLog {
        self.log.clone()
    }

    /// Whether the inject did what it should.
    pub fn injected(&self) -> bool {
        self.log.snapshot().inject.is_some_and(|r| r.ok)
    }

    /// Waits `duration`, or until the stop flag is raised.
    pub async fn hold(&self, duration: Duration, stop: &AtomicBool) -> HoldEnd {
        let end = tokio::time::Instant::now() + duration;
        loop {
            if stop.load(Ordering::Relaxed) {
                return HoldEnd::Stopped;
            }
            let now = tokio::time::Instant::now();
            if now >= end {
                return HoldEnd::Elapsed;
            }
            tokio::time::sleep((end - now).min(STOP_POLL)).await;
        }
    }

    /// Clears the fault and records why. The clear ignores the stop flag (a stop is when it
    /// matters most) but not `deadline`: a clear command still running then is ended, so a
    /// stopping daemon keeps its grace period.
    pub async fn clear(mut self, reason: ClearReason, deadline: Option<Instant>) -> FaultRecord {
        if let Some(armed) = self.armed.take() {
            let record = match armed {
                Armed::Action(Some(a)) => {
                    tracing::info!(fault = %self.log.snapshot().name, "clearing: {}", a.describe());
                    Some(a.run(None, deadline).await)
                }
                other => clear_now(other),
            };
            self.finish(reason, record);
        }
        self.log.snapshot()
    }

    fn finish(&self, reason: ClearReason, record: Option<ActionRecord>) {
        self.log.update(|r| {
            r.clear_reason = Some(reason);
            // A fault without a clear action is recorded as cleared when it ends.
            r.clear = Some(record.unwrap_or_else(|| {
                ActionRecord::instant("none".into(), ActionOutcome::Applied, true)
            }));
        });
    }
}

/// Clears what needs no waiting: toxics, or an action without a clear. `None` for an
/// action clear, which the caller runs.
fn clear_now(armed: Armed) -> Option<ActionRecord> {
    match armed {
        Armed::Toxics {
            proxy,
            listener,
            previous,
        } => {
            let what = if previous.is_empty() {
                format!("toxics {listener}: none")
            } else {
                format!(
                    "toxics {listener}: {}",
                    previous
                        .iter()
                        .map(Toxic::describe)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            Some(match proxy.set_toxics(&listener, previous) {
                Ok(()) => ActionRecord::instant(what, ActionOutcome::Applied, true),
                Err(e) => ActionRecord::instant(
                    what,
                    ActionOutcome::Failed {
                        error: e.to_string(),
                    },
                    false,
                ),
            })
        }
        Armed::Action(_) => None,
    }
}

impl Drop for FaultGuard {
    /// The last line of defence: the run was cancelled (a timeout dropped its future) or
    /// unwound. The clear runs to its end before the drop returns — on a thread of its own
    /// with its own runtime, since the caller's may be the one being torn down — bounded by
    /// the clear action's timeout.
    fn drop(&mut self) {
        let Some(armed) = self.armed.take() else {
            return;
        };
        let record = match armed {
            Armed::Action(Some(a)) => {
                tracing::warn!(fault = %self.log.snapshot().name, "clearing on drop: {}", a.describe());
                let run = std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map(|rt| rt.block_on(a.run(None, None)))
                        .map_err(|e| e.to_string())
                });
                Some(match run.join() {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => ActionRecord::instant(
                        "clear".into(),
                        ActionOutcome::Failed {
                            error: format!("no runtime for the clear: {e}"),
                        },
                        false,
                    ),
                    Err(_) => ActionRecord::instant(
                        "clear".into(),
                        ActionOutcome::Failed {
                            error: "the clear panicked".into(),
                        },
                        false,
                    ),
                })
            }
            other => clear_now(other),
        };
        self.finish(ClearReason::Dropped, record);
    }
}
