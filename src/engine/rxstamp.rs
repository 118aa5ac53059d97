//! A TCP stream that knows when the bytes it last read reached the machine.
//!
//! The open model's worker does not wake for each response: between two pacer ticks it sleeps
//! with the responses left in their sockets, and reads them all at the next tick (see
//! `super::pacer`). Latency must not grow by that wait, so a response's end is the kernel's
//! receive timestamp of its last bytes (`SO_TIMESTAMPNS`: the time the data was queued on the
//! socket, given with every `recvmsg`), not the time the worker got round to reading it.
//!
//! What it must not do: cost a system call per read beyond the `recvmsg` that replaces the
//! plain `recv` (it clears the socket's readiness after a short read as tokio's own stream
//! does, so the next response is waited for without a failed read first), or report a time
//! later than the read itself. Where there is no timestamp (another system, a kernel that
//! gives none, or the first moments after the first socket asks, before the kernel has turned
//! stamping on) the read's own time stands in, and the worker does not leave responses waiting.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Longest gap between the two monotonic readings around the wall-clock one in
/// [`StampedTcp::received_at`] before they are taken again.
const CLOCK_PAIR_SKEW: Duration = Duration::from_micros(20);

/// A plain TCP connection that records the receive time of the bytes of its last read (when
/// made with stamps on; otherwise a plain stream).
pub struct StampedTcp {
    inner: TcpStream,
    /// Whether reads go through `recvmsg` and keep the kernel's stamp.
    stamp: bool,
    /// Wall-clock receive time of the last bytes read, as the kernel stamped them.
    last_rx: Option<Duration>,
}

impl StampedTcp {
    /// Wraps `inner`; with `stamp`, asks the kernel to stamp what it receives (best effort:
    /// without the option the stream works as a plain one and [`Self::received_at`] gives
    /// `None`, as it always does without `stamp`).
    pub fn new(inner: TcpStream, stamp: bool) -> Self {
        #[cfg(target_os = "linux")]
        if stamp {
            use std::os::fd::AsRawFd;
            let on: libc::c_int = 1;
            // SAFETY: a valid socket and a pointer to an int of the length given.
            unsafe {
                libc::setsockopt(
                    inner.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPNS,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        StampedTcp {
            inner,
            stamp,
            last_rx: None,
        }
    }

    /// When the bytes of the last read arrived, on the monotonic clock, never before `floor`
    /// (the request's send) nor after now. The wall clock only gives the distance back from
    /// now: it is read between two readings of the monotonic clock, and the later one is
    /// used, so a pause between the readings (the thread preempted) can make the result late
    /// by that pause but never early; the readings are retried when the pause is long.
    pub fn received_at(&self, floor: Instant) -> Option<Instant> {
        let rx = self.last_rx?;
        let mut tries = 0;
        let (wall, now) = loop {
            let before = Instant::now();
            let wall = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
            let now = Instant::now();
            tries += 1;
            if now - before <= CLOCK_PAIR_SKEW || tries == 3 {
                break (wall, now);
            }
        };
        let ago = wall.saturating_sub(rx);
        let at = now.checked_sub(ago).unwrap_or(floor);
        Some(at.clamp(floor.min(now), now))
    }

    /// Forgets the last read's stamp (a new exchange starts).
    pub fn clear_stamp(&mut self) {
        self.last_rx = None;
    }

    #[cfg(target_os = "linux")]
    fn recv_stamped(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let fd = self.inner.as_raw_fd();
        let mut stamp = None;
        let len = dst.len();
        let mut short = 0;
        let r = self.inner.try_io(tokio::io::Interest::READABLE, || {
            let n = recvmsg_stamped(fd, dst, &mut stamp)?;
            if n > 0 && n < len {
                // Drained: like tokio's own stream, clear the readiness now (the error is
                // turned back into the count below) so the next read waits for new data
                // instead of first failing with EAGAIN.
                short = n;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let r = match r {
            Err(e) if short > 0 && e.kind() == io::ErrorKind::WouldBlock => Ok(short),
            r => r,
        };
        if let (Ok(n), Some(t)) = (&r, stamp) {
            if *n > 0 {
                self.last_rx = Some(t);
            }
        }
        r
    }
}

/// One `recvmsg` into `dst`; the `SCM_TIMESTAMPNS` it carries, if any, goes to `stamp`.
#[cfg(target_os = "linux")]
fn recvmsg_stamped(
    fd: std::os::fd::RawFd,
    dst: &mut [u8],
    stamp: &mut Option<Duration>,
) -> io::Result<usize> {
    // Room for one control message holding a timespec, aligned as cmsghdr requires.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the fields set below point at live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` describes `dst` and `control`, both alive and writable for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: walking the control messages the kernel wrote, within `msg_controllen`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                if ts.tv_sec > 0 {
                    *stamp = Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(n as usize)
}

impl AsyncRead for StampedTcp {
    #[cfg(target_os = "linux")]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.stamp {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        loop {
            match this.inner.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let dst = buf.initialize_unfilled();
            match this.recv_stamped(dst) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StampedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn run(f: impl std::future::Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f);
    }

    /// A client stream (stamped or not) and the server's end of it, on 127.0.0.1.
    async fn connected(stamp: bool) -> (StampedTcp, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (c, a) = tokio::join!(TcpStream::connect(addr), l.accept());
        (StampedTcp::new(c.unwrap(), stamp), a.unwrap().0)
    }

    #[test]
    fn a_read_late_is_stamped_with_its_arrival() {
        run(async {
            let (mut c, mut server) = connected(true).await;
            // The kernel turns stamping on a little after the first socket asks for it (from
            // a work queue): until then reads carry no stamp.
            let mut buf = [0u8; 16];
            for _ in 0..200 {
                server.write_all(b"x").await.unwrap();
                assert_eq!(c.read(&mut buf).await.unwrap(), 1);
                if c.received_at(Instant::now()).is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let before = Instant::now();
            server.write_all(b"hello").await.unwrap();
            let written = Instant::now();
            // The read comes 50 ms after the bytes arrived.
            std::thread::sleep(Duration::from_millis(50));
            let n = c.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hello");
            let at = c.received_at(before).expect("a stamp");
            let now = Instant::now();
            assert!(at >= before && at <= now);
            // A generous bound on a busy machine, far under the 50 ms the read waited.
            assert!(
                at < written + Duration::from_millis(25),
                "{:?}",
                at - written
            );
            // A short read cleared the readiness: nothing more until the server writes.
            let pending = tokio::time::timeout(Duration::from_millis(20), c.read(&mut buf)).await;
            assert!(pending.is_err());
            server.write_all(b"again").await.unwrap();
            let n = c.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"again");
            drop(server);
            assert_eq!(c.read(&mut buf).await.unwrap(), 0);
        });
    }

    /// The closed model reads each response as it comes: its streams are made without stamps
    /// and read as plain ones.
    #[test]
    fn a_stream_made_without_stamps_reads_plainly_and_has_none() {
        run(async {
            let (mut c, mut server) = connected(false).await;
            let mut buf = [0u8; 16];
            for _ in 0..20 {
                server.write_all(b"hello").await.unwrap();
                let n = c.read(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], b"hello");
                assert_eq!(c.received_at(Instant::now()), None);
            }
        });
    }
}
