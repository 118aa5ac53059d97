//! The fault proxy (Toxiproxy's model): named TCP listeners, each forwarding to an upstream,
//! whose toxics can be switched while connections are open.
//!
//! [`FaultProxy::start`] binds every listener and spawns their accept loops on the current
//! tokio runtime; [`ProxyHandle`] (cheap to clone) switches toxics; [`FaultProxy::shutdown`]
//! stops accepting, lets open connections finish within a grace period, then closes the rest.
//! This module must not decide when a fault happens (the fault probe does) nor name metrics.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures_util::task::AtomicWaker;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::pipe;
use super::toxic::{Toxic, ToxicSet};
use super::FaultError;
use crate::config::ProxyListenerConfig;

/// How long the last tasks get after the connections were told to close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Pause before binding again a listening address that could not be bound after a `down`.
const REBIND_PAUSE: Duration = Duration::from_millis(50);

/// One listener to start: its name, where it listens, where it forwards, and its toxics.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub name: String,
    /// Port 0 picks a free port; [`ProxyHandle::local_addr`] tells which.
    pub listen: SocketAddr,
    /// `host:port`, resolved at each new connection.
    pub upstream: String,
    /// Toxics active from the start.
    pub toxics: Vec<Toxic>,
}

impl ListenerSpec {
    /// A listener without toxics.
    pub fn new(name: impl Into<String>, listen: SocketAddr, upstream: impl Into<String>) -> Self {
        ListenerSpec {
            name: name.into(),
            listen,
            upstream: upstream.into(),
            toxics: Vec::new(),
        }
    }

    /// The runtime form of a validated configuration.
    pub fn from_config(c: &ProxyListenerConfig) -> Result<Self, FaultError> {
        let listen = c.listen.parse().map_err(|_| FaultError::Listener {
            listener: c.name.clone(),
            message: format!("{:?} is not an address", c.listen),
        })?;
        Ok(ListenerSpec {
            name: c.name.clone(),
            listen,
            upstream: c.upstream.clone(),
            toxics: c.toxic.iter().map(Toxic::from_config).collect(),
        })
    }
}

/// Where the proxy is in its life. Owned by [`FaultProxy`]; every task watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    /// Not accepting any more; open connections go on.
    Draining,
    /// Every connection closes now.
    Closed,
}

/// Counters of one listener, updated by its connections.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub accepted: AtomicU64,
    pub open: AtomicU64,
    pub bytes_upstream: AtomicU64,
    pub bytes_downstream: AtomicU64,
}

/// A snapshot of a listener's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListenerCounts {
    /// Connections accepted since the start.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Bytes forwarded client → upstream.
    pub bytes_upstream: u64,
    /// Bytes forwarded upstream → client.
    pub bytes_downstream: u64,
}

/// Wakes one connection when its listener's toxics switch or the proxy closes.
///
/// The data path polls it on every wake-up, so it is an atomic counter and an atomic waker:
/// no lock per chunk (a `watch::Receiver::changed` future would take the channel's lock,
/// shared by every connection, each time it is polled).
#[derive(Default)]
pub(super) struct ConnSignal {
    generation: AtomicU64,
    waker: AtomicWaker,
}

impl ConnSignal {
    /// The generation now; [`changed`](Self::changed) waits for another.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Resolves with the new generation once it differs from `seen`.
    pub fn changed(&self, seen: u64) -> impl Future<Output = u64> + '_ {
        std::future::poll_fn(move |cx| {
            let g = self.generation();
            if g != seen {
                return Poll::Ready(g);
            }
            // Register, then look again: a bump between the two loads is not lost.
            self.waker.register(cx.waker());
            let g = self.generation();
            if g != seen {
                Poll::Ready(g)
            } else {
                Poll::Pending
            }
        })
    }
}

/// A running listener, shared by its accept loop, its connections and the handles.
pub(super) struct Listener {
    pub name: String,
    /// The bound address (the port chosen for port 0); bound again here after a `down`.
    pub local_addr: SocketAddr,
    pub upstream: String,
    /// The current toxics; connections watch it, so a switch reaches open ones.
    toxics: watch::Sender<Arc<ToxicSet>>,
    pub stats: Stats,
    /// The open connections' signals, by connection id.
    conns: Mutex<HashMap<u64, Arc<ConnSignal>>>,
    next_conn: AtomicU64,
}

impl Listener {
    /// Registers a new connection; it is signalled until [`leave`](Self::leave).
    pub fn join(&self) -> (u64, Arc<ConnSignal>) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(ConnSignal::default());
        self.lock_conns().insert(id, signal.clone());
        (id, signal)
    }

    pub fn leave(&self, id: u64) {
        self.lock_conns().remove(&id);
    }

    /// Wakes every open connection to look at the toxics and the phase again.
    fn signal_all(&self) {
        for s in self.lock_conns().values() {
            s.bump();
        }
    }

    fn lock_conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnSignal>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Switches the toxics of a running proxy's listeners. Cheap to clone; stays usable after
/// the proxy stopped (switches then reach nobody).
#[derive(Clone)]
pub struct ProxyHandle {
    listeners: Arc<Vec<Arc<Listener>>>,
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.listeners.iter().map(|l| (&l.name, l.local_addr)))
            .finish()
    }
}

impl ProxyHandle {
    fn listener(&self, name: &str) -> Result<&Arc<Listener>, FaultError> {
        self.listeners
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| FaultError::UnknownListener(name.to_string()))
    }

    /// Replaces the listener's toxics; open connections switch at their next step (a chunk
    /// being written is finished first).
    pub fn set_toxics(&self, listener: &str, toxics: Vec<Toxic>) -> Result<(), FaultError> {
        let l = self.listener(listener)?;
        l.toxics.send_modify(|set| {
            *set = Arc::new(ToxicSet {
                generation: set.generation + 1,
                toxics,
            })
        });
        l.signal_all();
        Ok(())
    }

    /// Removes every toxic of the listener: a plain copy again.
    pub fn clear(&self, listener: &str) -> Result<(), FaultError> {
        self.set_toxics(listener, Vec::new())
    }

    /// The listener's current toxics.
    pub fn toxics(&self, listener: &str) -> Result<Vec<Toxic>, FaultError> {
        Ok(self.listener(listener)?.toxics.borrow().toxics.clone())
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self, listener: &str) -> Result<SocketAddr, FaultError> {
        Ok(self.listener(listener)?.local_addr)
    }

    /// The listener's counters now.
    pub fn counts(&self, listener: &str) -> Result<ListenerCounts, FaultError> {
        let s = &self.listener(listener)?.stats;
        Ok(ListenerCounts {
            accepted: s.accepted.load(Ordering::Relaxed),
            open: s.open.load(Ordering::Relaxed),
            bytes_upstream: s.bytes_upstream.load(Ordering::Relaxed),
            bytes_downstream: s.bytes_downstream.load(Ordering::Relaxed),
        })
    }

    /// Names, bound addresses and upstreams of the listeners, in start order.
    pub fn listeners(&self) -> Vec<(String, SocketAddr, String)> {
        self.listeners
            .iter()
            .map(|l| (l.name.clone(), l.local_addr, l.upstream.clone()))
            .collect()
    }

    fn open_connections(&self) -> u64 {
        self.listeners
            .iter()
            .map(|l| l.stats.open.load(Ordering::Relaxed))
            .sum()
    }
}

/// A running proxy. Dropping it closes every listener and connection (without waiting);
/// [`shutdown`](FaultProxy::shutdown) does it gracefully and waits.
pub struct FaultProxy {
    handle: ProxyHandle,
    /// Told to every task; the one stop signal of the proxy.
    phase: watch::Sender<Phase>,
    /// Every task holds a clone of `done_tx`; `done_rx` yields `None` once all are gone.
    done_tx: Option<mpsc::Sender<()>>,
    done_rx: mpsc::Receiver<()>,
}

/// What [`FaultProxy::shutdown`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections still open when the grace period ended, closed by the proxy.
    pub closed_connections: u64,
    /// Whether every task ended within the bound (grace period + 1 s).
    pub clean: bool,
}

impl FaultProxy {
    /// Binds every listener (all or none: an error closes those already bound) and starts
    /// accepting. Must be called within a tokio runtime.
    pub async fn start(specs: Vec<ListenerSpec>) -> Result<FaultProxy, FaultError> {
        let mut bound = Vec::with_capacity(specs.len());
        for s in specs {
            if bound
                .iter()
                .any(|(l, _): &(Arc<Listener>, _)| l.name == s.name)
            {
                return Err(FaultError::Listener {
                    listener: s.name,
                    message: "duplicate listener name".into(),
                });
            }
            let socket = TcpListener::bind(s.listen)
                .await
                .map_err(|source| FaultError::Bind {
                    listener: s.name.clone(),
                    addr: s.listen,
                    source,
                })?;
            let local_addr = socket.local_addr().map_err(|source| FaultError::Bind {
                listener: s.name.clone(),
                addr: s.listen,
                source,
            })?;
            let (toxics, _) = watch::channel(Arc::new(ToxicSet {
                generation: 1,
                toxics: s.toxics,
            }));
            let listener = Arc::new(Listener {
                name: s.name,
                local_addr,
                upstream: s.upstream,
                toxics,
                stats: Stats::default(),
                conns: Mutex::new(HashMap::new()),
                next_conn: AtomicU64::new(0),
            });
            bound.push((listener, socket));
        }
        let (phase, _) = watch::channel(Phase::Running);
        let (done_tx, done_rx) = mpsc::channel(1);
        let handle = ProxyHandle {
            listeners: Arc::new(bound.iter().map(|(l, _)| l.clone()).collect()),
        };
        for (listener, socket) in bound {
            tokio::spawn(accept_loop(
                listener,
                socket,
                phase.subscribe(),
                done_tx.clone(),
            ));
        }
        Ok(FaultProxy {
            handle,
            phase,
            done_tx: Some(done_tx),
            done_rx,
        })
    }

    /// A handle that switches toxics.
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    /// Stops accepting at once, waits up to `grace` for open connections to end, closes
    /// those left and waits for every task, at most `grace` + 1 s in all.
    pub async fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        let _ = self.phase.send(Phase::Draining);
        let deadline = tokio::time::Instant::now() + grace;
        while self.handle.open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let closed_connections = self.handle.open_connections();
        self.close_all();
        self.done_tx = None;
        let clean = tokio::time::timeout(CLOSE_WAIT, self.done_rx.recv())
            .await
            .is_ok();
        ShutdownReport {
            closed_connections,
            clean,
        }
    }
}

impl FaultProxy {
    fn close_all(&self) {
        let _ = self.phase.send(Phase::Closed);
        for l in self.handle.listeners.iter() {
            l.signal_all();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// Accepts connections of one listener until the proxy drains. While a `down` applies to
/// every connection, the listening socket is closed, so clients get "connection refused"
/// as from a stopped server; it is bound again when the `down` goes.
async fn accept_loop(
    listener: Arc<Listener>,
    socket: TcpListener,
    mut phase: watch::Receiver<Phase>,
    done: mpsc::Sender<()>,
) {
    let mut toxics = listener.toxics.subscribe();
    let mut socket = Some(socket);
    loop {
        if *phase.borrow_and_update() != Phase::Running {
            return;
        }
        if toxics.borrow_and_update().refuses_all() {
            socket = None;
        } else if socket.is_none() {
            match TcpListener::bind(listener.local_addr).await {
                Ok(s) => socket = Some(s),
                Err(e) => {
                    tracing::warn!(
                        listener = %listener.name,
                        "cannot listen on {} again after a down toxic: {e}; retrying",
                        listener.local_addr
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(REBIND_PAUSE) => {}
                        _ = phase.changed() => {}
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            r = phase.changed() => if r.is_err() { return },
            r = toxics.changed() => if r.is_err() { return },
            r = async { socket.as_ref().expect("checked by the precondition").accept().await }, if socket.is_some() => match r {
                Ok((stream, _)) => {
                    listener.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    let l = listener.clone();
                    let t = listener.toxics.subscribe();
                    let p = phase.clone();
                    let done = done.clone();
                    tokio::spawn(async move {
                        pipe::serve(stream, l, t, p).await;
                        drop(done);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(listener = %listener.name, "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}
