//! A lean HTTP/1.1 client exchange for the load-generation hot path.
//!
//! hyper's connection API runs a dispatcher task per connection and passes every request,
//! response and body chunk through channels; at load-generator rates that bookkeeping costs
//! several times the CPU of the exchange itself. [`H1Conn`] does the exchange inline in the
//! caller's task instead: one write of a request the caller serialized (with
//! [`serialize_request`], into a buffer it keeps), then reads into one buffer owned by the
//! connection, the head parsed in place with `httparse` and the body counted and dropped.
//!
//! What it must not do: allocate per request (the read buffer lives as long as the connection
//! and grows only for an unusually large head, to at most 64 KiB), copy or keep body bytes
//! unless the caller hands it a buffer for them ([`H1Conn::exchange_into`], for the few
//! probes that must read an answer, never the load hot path),
//! impose a timeout of its own (the caller's deadline wraps [`H1Conn::exchange`]), or speak
//! anything but plain one-request-at-a-time HTTP/1.1: no pipelining, upgrades or HTTP/2.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::http::{ErrorKind, RequestError};

/// Size of a new connection's read buffer: most response heads and many whole responses fit.
const INITIAL_BUFFER: usize = 16 * 1024;
/// Largest response head accepted (hyper's default limit is of the same order).
const MAX_HEAD: usize = 64 * 1024;
/// Header slots for `httparse`; left uninitialized, so a generous count costs nothing.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line, extensions included, and longest trailer section: bounds on what
/// a hostile or broken server can make us skip without counting it as body.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 64 * 1024;

/// The outcome of one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response1 {
    pub status: u16,
    /// Body bytes received (chunked framing and trailers not included).
    pub body_bytes: u64,
    /// Whether the connection may carry another request.
    pub reusable: bool,
}

/// One HTTP/1.1 connection, owned by one virtual user.
pub struct H1Conn<S> {
    stream: S,
    /// Received bytes not yet consumed are `buf[start..end]`. Always fully initialized, so
    /// reads go straight into it; body bytes are read into it and dropped, never copied out.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Cleared when an exchange starts and set only when one ends cleanly with a reusable
    /// response: an exchange that failed, or was dropped by the caller's timeout halfway,
    /// leaves the connection marked unusable.
    reusable: bool,
}

/// How the body of a response is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilEof,
}

#[derive(Debug)]
struct Head {
    /// Length of the head in bytes, blank line included.
    len: usize,
    status: u16,
    framing: Framing,
    keep_alive: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> H1Conn<S> {
    pub fn new(stream: S) -> Self {
        H1Conn {
            stream,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            reusable: true,
        }
    }

    /// The underlying stream.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Writes `request` (a complete head and body, see [`serialize_request`]) and reads the
    /// whole response, counting its body and discarding it. `head_request` says the method
    /// was HEAD, whose response has no body whatever its headers say.
    ///
    /// After an error the connection is in an unknown state and must be dropped.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        head_request: bool,
        max_body: u64,
    ) -> Result<Response1, RequestError> {
        self.exchange_into(request, head_request, max_body, None, None)
            .await
    }

    /// [`exchange`](Self::exchange), keeping the body's bytes in `keep` (cleared first) when
    /// given: for a caller that must read the answer (a captured id, a JSON rule). With
    /// `head_out`, the final response head (status line and headers, as received) is copied
    /// there too, for a flow that captures or checks a header; only such steps pay for it.
    pub async fn exchange_into(
        &mut self,
        request: &[u8],
        head_request: bool,
        max_body: u64,
        mut keep: Option<&mut Vec<u8>>,
        head_out: Option<&mut Vec<u8>>,
    ) -> Result<Response1, RequestError> {
        if let Some(k) = keep.as_deref_mut() {
            k.clear();
        }
        self.reusable = false;
        self.start = 0;
        self.end = 0;
        self.stream
            .write_all(request)
            .await
            .map_err(|e| protocol(format!("writing the request: {e}")))?;
        // A no-op on a TCP stream, but TLS streams buffer until flushed.
        self.stream
            .flush()
            .await
            .map_err(|e| protocol(format!("writing the request: {e}")))?;

        let head = loop {
            let head = self.read_head(head_request).await?;
            // Interim responses (100 Continue, 103 Early Hints) precede the real one; 101
            // is final, as the connection now speaks another protocol.
            if head.status >= 200 || head.status == 101 {
                break head;
            }
        };
        if let Some(h) = head_out {
            h.clear();
            h.extend_from_slice(&self.buf[self.start - head.len..self.start]);
        }
        let body_bytes = match head.framing {
            Framing::Empty => 0,
            Framing::Length(n) => {
                // Refused before reading: the connection is dropped anyway, and a 1 GB body
                // need not cross the network to fail.
                if n > max_body {
                    return Err(too_large(max_body));
                }
                self.discard_exact(n, keep).await?;
                n
            }
            Framing::Chunked => self.discard_chunked(max_body, keep).await?,
            Framing::UntilEof => self.discard_until_eof(max_body, keep).await?,
        };
        // Bytes after a complete response were never asked for (one request is in flight at
        // a time): a server bug, or a body longer than its framing said. Parsing them as the
        // next response would pin them on the wrong request, so the connection is retired.
        let leftover = self.start != self.end;
        self.start = 0;
        self.end = 0;
        let reusable =
            head.keep_alive && head.status != 101 && head.framing != Framing::UntilEof && !leftover;
        self.reusable = reusable;
        Ok(Response1 {
            status: head.status,
            body_bytes,
            reusable,
        })
    }

    /// Whether the connection can carry another request: the last exchange ended with a
    /// reusable response and, since then, the server has neither closed the connection (an
    /// idle keep-alive timeout) nor sent anything. Call it between exchanges.
    ///
    /// It is one non-blocking read attempt. On a tokio socket whose last read came up short
    /// of the buffer (the usual end of a response), tokio already knows the socket is drained,
    /// so the attempt is a readiness check without a system call.
    pub fn is_usable(&mut self) -> bool {
        if !self.reusable {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut probe = ReadBuf::new(&mut self.buf);
        match Pin::new(&mut self.stream).poll_read(&mut cx, &mut probe) {
            Poll::Pending => true,
            // End of stream, unrequested bytes or an error: nothing to send a request on.
            Poll::Ready(_) => {
                self.reusable = false;
                false
            }
        }
    }

    /// Reads until `buf[start..]` begins with a complete response head, and consumes it.
    async fn read_head(&mut self, head_request: bool) -> Result<Head, RequestError> {
        loop {
            if let Some((len, head)) = parse_head(&self.buf[self.start..self.end], head_request)? {
                self.start += len;
                return Ok(head);
            }
            if self.end - self.start >= MAX_HEAD {
                return Err(protocol("response head larger than 64 KiB"));
            }
            if self.end == self.buf.len() {
                self.make_room_for_head();
            }
            let n = self
                .stream
                .read(&mut self.buf[self.end..])
                .await
                .map_err(|e| protocol(format!("reading the response: {e}")))?;
            if n == 0 {
                return Err(protocol(
                    "connection closed before the response was complete",
                ));
            }
            self.end += n;
        }
    }

    /// Frees space after a partial head: moves it to the front if an interim response was
    /// consumed before it, else grows the buffer (kept grown for the connection's life).
    fn make_room_for_head(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        } else {
            // The head check above guarantees a full buffer is smaller than MAX_HEAD.
            let len = (self.buf.len() * 2).min(MAX_HEAD);
            self.buf.resize(len, 0);
        }
    }

    /// Replaces the (fully consumed) buffer contents with the next bytes of the body.
    /// Returns 0 at end of stream.
    async fn read_body(&mut self) -> Result<usize, RequestError> {
        debug_assert_eq!(self.start, self.end, "body bytes left unconsumed");
        self.start = 0;
        self.end = 0;
        let n = self
            .stream
            .read(&mut self.buf)
            .await
            .map_err(|e| body_broke_off(&format!("reading the body: {e}")))?;
        self.end = n;
        Ok(n)
    }

    async fn discard_exact(
        &mut self,
        mut left: u64,
        mut keep: Option<&mut Vec<u8>>,
    ) -> Result<(), RequestError> {
        loop {
            let take = left.min((self.end - self.start) as u64);
            if let Some(k) = keep.as_deref_mut() {
                k.extend_from_slice(&self.buf[self.start..self.start + take as usize]);
            }
            self.start += take as usize;
            left -= take;
            if left == 0 {
                return Ok(());
            }
            if self.read_body().await? == 0 {
                return Err(body_broke_off(
                    "connection closed before the body was complete",
                ));
            }
        }
    }

    async fn discard_chunked(
        &mut self,
        max_body: u64,
        mut keep: Option<&mut Vec<u8>>,
    ) -> Result<u64, RequestError> {
        let mut decoder = ChunkedBody::new(max_body);
        loop {
            self.start +=
                decoder.feed_keeping(&self.buf[self.start..self.end], keep.as_deref_mut())?;
            if decoder.is_done() {
                return Ok(decoder.data_bytes);
            }
            if self.read_body().await? == 0 {
                return Err(body_broke_off("connection closed before the last chunk"));
            }
        }
    }

    async fn discard_until_eof(
        &mut self,
        max_body: u64,
        mut keep: Option<&mut Vec<u8>>,
    ) -> Result<u64, RequestError> {
        let mut total = 0u64;
        loop {
            total += (self.end - self.start) as u64;
            if let (Some(k), true) = (keep.as_deref_mut(), total <= max_body) {
                k.extend_from_slice(&self.buf[self.start..self.end]);
            }
            self.start = self.end;
            if total > max_body {
                return Err(too_large(max_body));
            }
            if self.read_body().await? == 0 {
                return Ok(total);
            }
        }
    }
}

/// Parses a response head at the start of `bytes`: `None` while it is incomplete, else its
/// length and what the exchange needs from it.
fn parse_head(bytes: &[u8], head_request: bool) -> Result<Option<(usize, Head)>, RequestError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    // Uninitialized slots: an initialized array would be zeroed on every parse attempt.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, bytes, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(malformed(e)),
    };
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Err(protocol("malformed HTTP response: no status line"));
    };

    let mut content_length = None;
    let mut chunked = None; // Some(whether the last transfer coding is chunked)
    let (mut close, mut keep_alive) = (false, false);
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            // Repeated fields and lists are allowed if every value agrees (RFC 9110 §8.6).
            for v in list_items(h.value) {
                let n = parse_decimal(v)
                    .ok_or_else(|| protocol("malformed HTTP response: invalid Content-Length"))?;
                if content_length.is_some_and(|m| m != n) {
                    return Err(protocol(
                        "malformed HTTP response: conflicting Content-Length values",
                    ));
                }
                content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Several fields form one list; only the last coding decides the framing.
            for v in list_items(h.value) {
                chunked = Some(v.eq_ignore_ascii_case(b"chunked"));
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for v in list_items(h.value) {
                close |= v.eq_ignore_ascii_case(b"close");
                keep_alive |= v.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }

    let http10 = minor == 0;
    if http10 && chunked.is_some() {
        // RFC 9112 §6.1: the framing of such a message cannot be trusted (hyper rejects it too).
        return Err(protocol(
            "malformed HTTP response: Transfer-Encoding in an HTTP/1.0 response",
        ));
    }
    // Both framings at once is the shape of a response-splitting attempt: Transfer-Encoding
    // wins (RFC 9112 §6.3), and the connection is not trusted with another request.
    let ambiguous = chunked.is_some() && content_length.is_some();
    let framing = if head_request || status < 200 || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, content_length) {
            (Some(true), _) => Framing::Chunked,
            // A response whose last coding is not chunked ends when the connection does.
            (Some(false), _) | (None, None) => Framing::UntilEof,
            (None, Some(n)) => Framing::Length(n),
        }
    };
    let keep_alive = !close && !ambiguous && (!http10 || keep_alive);
    Ok(Some((
        len,
        Head {
            len,
            status,
            framing,
            keep_alive,
        },
    )))
}

/// The non-empty items of a comma-separated field value, without surrounding whitespace.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|v| !v.is_empty())
}

/// A Content-Length value: decimal digits only, no sign, no overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

/// Where the chunked decoder is in the body (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of a chunk size.
    Size {
        size: u64,
        digits: u32,
    },
    /// Chunk extensions after the size, skipped up to the CR.
    Extension(u64),
    /// After the CR ending a size line; holds the size.
    SizeLf(u64),
    /// Inside chunk data; holds the bytes left.
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer field line or of the final empty line.
    TrailerStart,
    /// Inside a trailer field line, skipped up to its LF.
    Trailer,
    EndLf,
    Done,
}

/// A streaming chunked-body decoder: it is fed whatever arrived, keeps its place between
/// reads (a size line or a CRLF may be split anywhere), and counts data bytes without
/// keeping them.
#[derive(Debug)]
struct ChunkedBody {
    state: ChunkState,
    max_body: u64,
    data_bytes: u64,
    /// Bytes in the current size line, or in the trailer section.
    overhead: usize,
}

impl ChunkedBody {
    fn new(max_body: u64) -> Self {
        ChunkedBody {
            state: ChunkState::Size { size: 0, digits: 0 },
            max_body,
            data_bytes: 0,
            overhead: 0,
        }
    }

    fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    #[cfg(test)]
    fn feed(&mut self, input: &[u8]) -> Result<usize, RequestError> {
        self.feed_keeping(input, None)
    }

    /// Consumes body bytes from `input` and returns how many it used: all of them, unless
    /// the body ends first. Data bytes are appended to `keep` when given.
    fn feed_keeping(
        &mut self,
        input: &[u8],
        mut keep: Option<&mut Vec<u8>>,
    ) -> Result<usize, RequestError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                ChunkState::Done => break,
                // Data is skipped in bulk; only framing goes byte by byte.
                ChunkState::Data(left) => {
                    let take = left.min((input.len() - i) as u64);
                    if let Some(k) = keep.as_deref_mut() {
                        k.extend_from_slice(&input[i..i + take as usize]);
                    }
                    i += take as usize;
                    self.state = if take == left {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                _ => {
                    self.step(input[i])?;
                    i += 1;
                }
            }
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<(), RequestError> {
        use ChunkState::*;
        self.state = match self.state {
            Size { size, digits } => {
                self.count_overhead(MAX_CHUNK_LINE)?;
                match (b, hex_value(b)) {
                    (_, Some(_)) if digits == 16 => {
                        return Err(chunk_error("chunk size too large"))
                    }
                    (_, Some(d)) => Size {
                        size: (size << 4) | d,
                        digits: digits + 1,
                    },
                    _ if digits == 0 => return Err(chunk_error("missing chunk size")),
                    (b'\r', _) => SizeLf(size),
                    (b';' | b' ' | b'\t', _) => Extension(size),
                    _ => return Err(chunk_error("invalid chunk size")),
                }
            }
            Extension(size) => {
                self.count_overhead(MAX_CHUNK_LINE)?;
                match b {
                    b'\r' => SizeLf(size),
                    b'\n' => return Err(chunk_error("bare LF in a chunk extension")),
                    _ => Extension(size),
                }
            }
            SizeLf(size) if b == b'\n' => {
                self.overhead = 0;
                if size == 0 {
                    TrailerStart
                } else {
                    self.data_bytes = self.data_bytes.saturating_add(size);
                    // Refused as soon as the chunk is announced: its bytes need not arrive.
                    if self.data_bytes > self.max_body {
                        return Err(too_large(self.max_body));
                    }
                    Data(size)
                }
            }
            DataCr if b == b'\r' => DataLf,
            DataLf if b == b'\n' => Size { size: 0, digits: 0 },
            SizeLf(_) | DataCr | DataLf => return Err(chunk_error("expected CRLF")),
            TrailerStart | Trailer => {
                self.count_overhead(MAX_TRAILERS)?;
                match (self.state, b) {
                    (TrailerStart, b'\r') => EndLf,
                    // A bare LF ends a line too (RFC 9112 §2.2 lets recipients accept it).
                    (TrailerStart, b'\n') => Done,
                    (_, b'\n') => TrailerStart,
                    _ => Trailer,
                }
            }
            EndLf if b == b'\n' => Done,
            EndLf => return Err(chunk_error("expected CRLF after the trailers")),
            // `feed` handles these without calling `step`.
            Data(_) | Done => self.state,
        };
        Ok(())
    }

    fn count_overhead(&mut self, limit: usize) -> Result<(), RequestError> {
        self.overhead += 1;
        if self.overhead > limit {
            return Err(chunk_error("chunk size line or trailers too long"));
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// Serializes a request into `out` (cleared first) for [`H1Conn::exchange`]: request line
/// with `path_and_query` as the origin-form target, `headers` (which for HTTP/1.1 must
/// include Host), Content-Length, a blank line and `body`.
///
/// Content-Length is always computed here, and one in `headers` is skipped, so the framing
/// cannot disagree with the body. It is sent when there is a body, or for methods that are
/// expected to carry one (some servers answer a body-less POST with 411 Length Required).
pub fn serialize_request(
    out: &mut Vec<u8>,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        if path_and_query.is_empty() {
            "/"
        } else {
            path_and_query
        }
        .as_bytes(),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty()
        || *method == Method::POST
        || *method == Method::PUT
        || *method == Method::PATCH
    {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Appends `n` in decimal without going through the formatting machinery.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn protocol(message: impl Into<String>) -> RequestError {
    RequestError::new(ErrorKind::Protocol, message)
}

fn malformed(e: httparse::Error) -> RequestError {
    protocol(format!("malformed HTTP response: {e}"))
}

fn chunk_error(what: &str) -> RequestError {
    protocol(format!(
        "malformed HTTP response: {what} in the chunked body"
    ))
}

/// The error of a body over the configured limit (shared with the HTTP/2 path).
pub(crate) fn too_large(max_body: u64) -> RequestError {
    RequestError::new(
        ErrorKind::Body,
        format!("body larger than the {max_body}-byte limit (max_body_bytes)"),
    )
}

/// A body that broke off after its head arrived. This is [`ErrorKind::Body`], as documented
/// on the kind and as hyper's exchange reported it, so the `kind` label of existing metrics
/// keeps its meaning; a close before the head is complete is [`ErrorKind::Protocol`].
fn body_broke_off(what: &str) -> RequestError {
    RequestError::new(ErrorKind::Body, what)
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
