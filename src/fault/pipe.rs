//! One proxied connection: the client's socket, the upstream's, and the two forwarding loops
//! between them, each acting on the toxics of its way.
//!
//! With no toxic a loop is a plain copy through one reusable buffer (no allocation per
//! chunk, no channel, no extra task): that is the overhead `bench/proxy.sh` measures. Only
//! while a toxic applies does a loop keep a queue of timed chunks. Writes always complete
//! outside `select!`, so a toxic switch never cuts a chunk in half.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::proxy::{ConnSignal, Listener, Phase};
use super::toxic::{bandwidth_piece, transmit_time, ToxicSet, Way, WayToxics};

/// Read buffer of each way: large enough for bulk transfers in few syscalls.
const BUF: usize = 64 * 1024;
/// Most bytes a way holds back under latency or bandwidth before it stops reading (the
/// sender then feels TCP back-pressure instead of the proxy growing without bound).
const MAX_QUEUED: usize = 1024 * 1024;
/// Longest wait for the upstream to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a forwarding loop ended the whole connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// A `down` toxic applies to the connection.
    Down,
    /// `reset_peer`: the receiving side of this way gets a TCP RST.
    Reset(Way),
    /// `limit_data`: the way's byte budget is spent.
    LimitData,
    /// The proxy is closing.
    Stopped,
    /// A socket failed (the peer reset, or the proxy went away).
    Broken,
}

/// How one forwarding loop ended.
enum PumpEnd {
    /// The sender closed its side and everything was forwarded; the receiver got a FIN.
    Eof,
    /// The connection must close as a whole.
    Kill(Kill),
}

/// Serves one accepted connection to its end. Holds the listener's `open` count for its
/// lifetime.
pub(super) async fn serve(
    client: TcpStream,
    listener: Arc<Listener>,
    toxics: watch::Receiver<Arc<ToxicSet>>,
    mut phase: watch::Receiver<Phase>,
) {
    let _open = OpenGuard::new(&listener);
    let signal = _open.signal.clone();
    // One draw per connection: both ways derive the same toxicity decisions from it.
    let seed = fastrand::u64(..);
    if toxics.borrow().view(Way::Upstream, seed).down {
        reset(&client);
        return;
    }
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&listener.upstream));
    let upstream = tokio::select! {
        r = connect => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(listener = %listener.name, "upstream {}: {e}", listener.upstream);
                return;
            }
            Err(_) => {
                tracing::debug!(listener = %listener.name, "upstream {}: connect timed out", listener.upstream);
                return;
            }
        },
        _ = closed(&mut phase) => return,
    };
    // The proxy must not add Nagle delays of its own to small request/response exchanges.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let mut client = client;
    let mut upstream = upstream;
    let kill = {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        let up = Pump::new(Way::Upstream, seed, toxics.clone(), phase.clone(), &signal).run(
            &mut cr,
            &mut uw,
            &listener.stats.bytes_upstream,
        );
        let down = Pump::new(Way::Downstream, seed, toxics, phase, &signal).run(
            &mut ur,
            &mut cw,
            &listener.stats.bytes_downstream,
        );
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            let end = tokio::select! {
                e = &mut up, if !up_done => { up_done = true; e }
                e = &mut down, if !down_done => { down_done = true; e }
            };
            if let PumpEnd::Kill(k) = end {
                break Some(k);
            }
            if up_done && down_done {
                break None;
            }
        }
    };
    match kill {
        Some(Kill::Reset(Way::Downstream)) => reset(&client),
        Some(Kill::Reset(Way::Upstream)) => reset(&upstream),
        _ => {}
    }
    // Dropping both sockets closes them (FIN, or RST where linger was set to zero).
}

/// Makes the close of `s` a TCP RST: the peer's next read or write fails with
/// ECONNRESET.
fn reset(s: &TcpStream) {
    let _ = s.set_zero_linger();
}

/// Resolves when the proxy reaches [`Phase::Closed`] (or is gone).
pub(super) async fn closed(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p == Phase::Closed).await;
}

/// Counts a connection as open, and keeps its signal registered, while it lives.
struct OpenGuard<'a> {
    listener: &'a Listener,
    id: u64,
    signal: Arc<ConnSignal>,
}

impl<'a> OpenGuard<'a> {
    fn new(listener: &'a Listener) -> Self {
        listener.stats.open.fetch_add(1, Ordering::Relaxed);
        let (id, signal) = listener.join();
        OpenGuard {
            listener,
            id,
            signal,
        }
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.listener.leave(self.id);
        self.listener.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A chunk held back by latency or bandwidth: forwarded from `off` once `due`.
struct Chunk {
    due: Instant,
    data: Vec<u8>,
    off: usize,
}

/// One way of a connection.
struct Pump<'a> {
    way: Way,
    /// Bumped when the toxics switch or the proxy closes; `seen` is the last generation
    /// this way acted on.
    signal: &'a ConnSignal,
    seen: u64,
    seed: u64,
    toxics: watch::Receiver<Arc<ToxicSet>>,
    phase: watch::Receiver<Phase>,
    /// The toxics that apply now, and since when (`reset_peer` counts from then, and
    /// `limit_data` counts the bytes since then).
    view: WayToxics,
    since: Instant,
    /// Bytes let through under the current `limit_data`.
    limited: u64,
    queue: VecDeque<Chunk>,
    queued: usize,
    /// Bandwidth pacing: the next piece may not be written before this.
    next_send: Instant,
    rng: fastrand::Rng,
}

impl<'a> Pump<'a> {
    fn new(
        way: Way,
        seed: u64,
        toxics: watch::Receiver<Arc<ToxicSet>>,
        phase: watch::Receiver<Phase>,
        signal: &'a ConnSignal,
    ) -> Self {
        let now = Instant::now();
        Pump {
            way,
            signal,
            seen: signal.generation(),
            seed,
            toxics,
            phase,
            view: WayToxics::default(),
            since: now,
            limited: 0,
            queue: VecDeque::new(),
            queued: 0,
            next_send: now,
            rng: fastrand::Rng::with_seed(seed ^ way as u64),
        }
    }

    /// Takes the current toxic set; `true` when a `down` applies.
    fn refresh(&mut self) -> bool {
        self.seen = self.signal.generation();
        let set = self.toxics.borrow_and_update().clone();
        self.view = set.view(self.way, self.seed);
        self.since = Instant::now();
        self.limited = 0;
        self.view.down
    }

    /// After a signal: what changed, if anything. `Some` ends the loop.
    fn on_signal(&mut self) -> Option<PumpEnd> {
        self.seen = self.signal.generation();
        if *self.phase.borrow() == Phase::Closed {
            return Some(PumpEnd::Kill(Kill::Stopped));
        }
        match self.toxics.has_changed() {
            Err(_) => Some(PumpEnd::Kill(Kill::Stopped)),
            Ok(true) if self.refresh() => Some(PumpEnd::Kill(Kill::Down)),
            Ok(_) => None,
        }
    }

    async fn run<R, W>(mut self, src: &mut R, dst: &mut W, bytes: &AtomicU64) -> PumpEnd
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.refresh() {
            return PumpEnd::Kill(Kill::Down);
        }
        if *self.phase.borrow_and_update() == Phase::Closed {
            return PumpEnd::Kill(Kill::Stopped);
        }
        // One buffer for the connection's whole life: the plain copy allocates nothing per
        // chunk.
        let mut buf = vec![0u8; BUF];
        let mut eof = false;
        loop {
            if self.view.is_clear() && self.queue.is_empty() && !eof {
                // The plain copy. Control first (`biased`), so a toxic switch is seen even
                // while data keeps coming.
                tokio::select! {
                    biased;
                    _ = self.signal.changed(self.seen) => {
                        if let Some(end) = self.on_signal() {
                            return end;
                        }
                    }
                    r = src.read(&mut buf) => match r {
                        Ok(0) => eof = true,
                        Ok(n) => {
                            if dst.write_all(&buf[..n]).await.is_err() {
                                return PumpEnd::Kill(Kill::Broken);
                            }
                            bytes.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(_) => return PumpEnd::Kill(Kill::Broken),
                    },
                }
                continue;
            }
            if eof && self.queue.is_empty() {
                return self.finish(dst).await;
            }
            if let Some(end) = self.toxic_step(src, dst, &mut buf, &mut eof, bytes).await {
                return end;
            }
        }
    }

    /// The sender closed and everything is forwarded: hold the close back under
    /// `slow_close`, then pass the FIN on.
    async fn finish<W: AsyncWrite + Unpin>(&mut self, dst: &mut W) -> PumpEnd {
        if let Some(delay) = self.view.slow_close {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = closed(&mut self.phase) => return PumpEnd::Kill(Kill::Stopped),
            }
        }
        let _ = dst.shutdown().await;
        PumpEnd::Eof
    }

    /// One step under toxics: wait for data, a due chunk, a deadline or a switch, then
    /// forward what is due. `Some` ends the loop.
    async fn toxic_step<R, W>(
        &mut self,
        src: &mut R,
        dst: &mut W,
        buf: &mut [u8],
        eof: &mut bool,
        bytes: &AtomicU64,
    ) -> Option<PumpEnd>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let reset_at = self.view.reset_after.map(|a| self.since + a);
        let spent = self.view.limit_bytes.is_some_and(|l| self.limited >= l);
        let due = self.queue.front().map(|c| {
            if self.view.bytes_per_second.is_some() {
                c.due.max(self.next_send)
            } else {
                c.due
            }
        });
        let timer = match (reset_at, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let can_read = !*eof && !spent && self.queued < MAX_QUEUED;
        // Read at most one bandwidth piece at a time, so the pacing holds for small rates.
        let read_len = match self.view.bytes_per_second {
            Some(r) => bandwidth_piece(r).min(buf.len()),
            None => buf.len(),
        };
        tokio::select! {
            biased;
            _ = self.signal.changed(self.seen) => {
                if let Some(end) = self.on_signal() {
                    return Some(end);
                }
            }
            _ = sleep_until_opt(timer), if timer.is_some() => {}
            r = src.read(&mut buf[..read_len]), if can_read => match r {
                Ok(0) => *eof = true,
                Ok(n) => self.take(&buf[..n]),
                Err(_) => return Some(PumpEnd::Kill(Kill::Broken)),
            },
        }
        let now = Instant::now();
        if reset_at.is_some_and(|at| at <= now) {
            return Some(PumpEnd::Kill(Kill::Reset(self.way)));
        }
        if let Err(k) = self.flush_due(dst, bytes).await {
            return Some(PumpEnd::Kill(k));
        }
        let spent = self.view.limit_bytes.is_some_and(|l| self.limited >= l);
        if spent && self.queue.is_empty() {
            return Some(PumpEnd::Kill(Kill::LimitData));
        }
        None
    }

    /// Queues a chunk that was read, or drops it under `blackhole`.
    fn take(&mut self, data: &[u8]) {
        if self.view.blackhole {
            return;
        }
        let mut data = data;
        if let Some(limit) = self.view.limit_bytes {
            let room = limit.saturating_sub(self.limited) as usize;
            data = &data[..data.len().min(room)];
            self.limited += data.len() as u64;
        }
        if data.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut due = now + self.view.chunk_delay(&mut self.rng);
        // Jitter must not reorder the stream.
        if let Some(last) = self.queue.back() {
            due = due.max(last.due);
        }
        self.queued += data.len();
        self.queue.push_back(Chunk {
            due,
            data: data.to_vec(),
            off: 0,
        });
    }

    /// Writes every chunk that is due, piece by piece under a bandwidth limit.
    async fn flush_due<W: AsyncWrite + Unpin>(
        &mut self,
        dst: &mut W,
        bytes: &AtomicU64,
    ) -> Result<(), Kill> {
        loop {
            let now = Instant::now();
            let Some(front) = self.queue.front_mut() else {
                return Ok(());
            };
            if front.due > now {
                return Ok(());
            }
            let rest = front.data.len() - front.off;
            let n = match self.view.bytes_per_second {
                Some(rate) => {
                    if self.next_send > now {
                        return Ok(());
                    }
                    let n = rest.min(bandwidth_piece(rate));
                    // A sender idle for a while gets no burst credit beyond one piece.
                    self.next_send = self.next_send.max(now) + transmit_time(n, rate);
                    n
                }
                None => rest,
            };
            if dst
                .write_all(&front.data[front.off..front.off + n])
                .await
                .is_err()
            {
                return Err(Kill::Broken);
            }
            bytes.fetch_add(n as u64, Ordering::Relaxed);
            front.off += n;
            self.queued -= n;
            if front.off == front.data.len() {
                self.queue.pop_front();
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
