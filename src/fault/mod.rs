//! Faults: the built-in fault proxy (Toxiproxy's model) and external fault actions.
//!
//! - [`FaultProxy`] forwards named TCP listeners to their upstreams and applies
//!   [`Toxic`]s — `down`, `blackhole`, `latency`, `bandwidth`, `slow_close`, `reset_peer`,
//!   `limit_data`, per direction, on a share of the connections — switched through a
//!   [`ProxyHandle`] while connections are open. With no toxic it is a plain copy.
//! - [`FaultAction`] runs a command (no shell unless asked) or an HTTP call, bounded by its
//!   timeout and the stop flag, and returns an [`ActionRecord`].
//! - [`FaultGuard`] injects a [`Fault`] and guarantees its clear — at the end, on failure,
//!   timeout, stop, cancellation or unwind — recording it in a [`FaultLog`].
//! - [`run_proxy`] is `plimsoll proxy --config FILE`.
//!
//! This module must not schedule faults, measure load or grade anything (the fault probe
//! does), and names no metrics (telemetry does). Everything here honours one stop: the
//! proxy's [`shutdown`](FaultProxy::shutdown) and the actions' stop flag, within the grace
//! period plus one second.

mod action;
mod guard;
mod pipe;
mod proxy;
mod standalone;
mod toxic;

pub use action::{ActionOutcome, ActionRecord, CommandAction, FaultAction, HttpAction};
pub use guard::{ClearReason, Fault, FaultGuard, FaultLog, FaultRecord, HoldEnd};
pub use proxy::{FaultProxy, ListenerCounts, ListenerSpec, ProxyHandle, ShutdownReport};
pub use standalone::{run_proxy, serve_proxy};
pub use toxic::{Direction, Toxic, ToxicKind};

use std::net::SocketAddr;

use crate::config::ConfigErrors;

/// Why a proxy or an action could not be set up. (How an action *ran* is data, in its
/// [`ActionRecord`], never an error.)
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The proxy's configuration has problems, each with its path.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A listening address could not be bound (in use, no permission).
    #[error("listener {listener}: cannot listen on {addr}: {source}")]
    Bind {
        listener: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A listener's settings cannot be used.
    #[error("listener {listener}: {message}")]
    Listener { listener: String, message: String },
    /// A toxic switch named a listener the proxy does not have.
    #[error("no proxy listener named {0:?}")]
    UnknownListener(String),
    /// An action's settings cannot be used.
    #[error("{0}")]
    Action(String),
    /// The runtime or the signal handlers could not be set up.
    #[error("cannot start: {0}")]
    Start(#[source] std::io::Error),
}
