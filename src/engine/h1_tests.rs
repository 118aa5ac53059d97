//! Tests of the HTTP/1.1 exchange: framing over a scripted stream that splits the response at
//! every possible point, and connection handling over real loopback sockets.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, HOST};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::*;

/// Serves a canned response in reads of at most `piece` bytes, then end of stream; keeps
/// what is written to it.
struct Scripted {
    input: Vec<u8>,
    pos: usize,
    piece: usize,
    written: Vec<u8>,
}

impl Scripted {
    fn new(input: impl AsRef<[u8]>, piece: usize) -> Self {
        Scripted {
            input: input.as_ref().to_vec(),
            pos: 0,
            piece,
            written: Vec::new(),
        }
    }
}

impl AsyncRead for Scripted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self
            .piece
            .min(self.input.len() - self.pos)
            .min(buf.remaining());
        buf.put_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const MAX: u64 = 1 << 20;

fn get(path: &str) -> Vec<u8> {
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_static("127.0.0.1"));
    let mut out = Vec::new();
    serialize_request(&mut out, &Method::GET, path, &headers, b"");
    out
}

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("test timed out")
}

/// One exchange of a GET against `response` delivered in `piece`-byte reads.
async fn scripted(
    response: &[u8],
    piece: usize,
    head: bool,
    max: u64,
) -> Result<Response1, RequestError> {
    let mut conn = H1Conn::new(Scripted::new(response, piece));
    let request = get("/x");
    let out = bounded(conn.exchange(&request, head, max)).await;
    assert_eq!(
        conn.stream.written, request,
        "the request must be written as given"
    );
    out
}

fn ok(status: u16, body_bytes: u64, reusable: bool) -> Response1 {
    Response1 {
        status,
        body_bytes,
        reusable,
    }
}

/// Accepts exactly one connection and answers each request on it with the next response,
/// then closes it; returns the requests it read. A client that reconnected would hang.
async fn serve_one_connection(responses: Vec<Vec<u8>>) -> (SocketAddr, JoinHandle<Vec<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut requests = Vec::new();
        for response in responses {
            let mut req = Vec::new();
            let mut chunk = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    return requests;
                }
                req.extend_from_slice(&chunk[..n]);
            }
            requests.push(req);
            sock.write_all(&response).await.unwrap();
        }
        requests
    });
    (addr, server)
}

#[tokio::test]
async fn content_length_body_is_counted_at_every_split() {
    let resp =
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello world";
    for piece in 1..=resp.len() {
        assert_eq!(
            scripted(resp, piece, false, MAX).await.unwrap(),
            ok(200, 11, true),
            "piece {piece}"
        );
    }
}

#[tokio::test]
async fn chunked_body_with_extension_and_trailer_is_decoded_at_every_split() {
    let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
        5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\n";
    for piece in 1..=resp.len() {
        assert_eq!(
            scripted(resp, piece, false, MAX).await.unwrap(),
            ok(200, 31, true),
            "piece {piece}"
        );
    }
}

#[tokio::test]
async fn keep_alive_carries_three_exchanges_on_one_connection() {
    let (addr, server) = serve_one_connection(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none".to_vec(),
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n".to_vec(),
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nthree".to_vec(),
    ])
    .await;
    let mut conn = H1Conn::new(TcpStream::connect(addr).await.unwrap());
    let requests = [get("/1"), get("/2"), get("/3")];
    let mut got = Vec::new();
    for r in &requests {
        assert!(conn.is_usable(), "an idle keep-alive connection is usable");
        got.push(bounded(conn.exchange(r, false, MAX)).await.unwrap());
    }
    assert_eq!(got, [ok(200, 3, true), ok(201, 3, true), ok(404, 5, true)]);
    assert_eq!(bounded(server).await.unwrap(), requests);
}

#[tokio::test]
async fn connection_close_and_http10_responses_are_not_reusable() {
    let close = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(
        scripted(close, 64, false, MAX).await.unwrap(),
        ok(200, 2, false)
    );
    let old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(
        scripted(old, 64, false, MAX).await.unwrap(),
        ok(200, 2, false)
    );
    let old_keep = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(
        scripted(old_keep, 64, false, MAX).await.unwrap(),
        ok(200, 2, true)
    );
}

#[tokio::test]
async fn body_without_framing_is_read_to_eof_in_the_fixed_buffer() {
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    resp.resize(resp.len() + 300_000, b'x');
    let mut conn = H1Conn::new(Scripted::new(&resp, 4096));
    let out = bounded(conn.exchange(&get("/"), false, MAX)).await.unwrap();
    assert_eq!(out, ok(200, 300_000, false));
    assert_eq!(
        conn.buf.len(),
        INITIAL_BUFFER,
        "a large body must not grow the buffer"
    );
    assert!(!conn.is_usable());
}

#[tokio::test]
async fn head_204_and_304_responses_have_no_body_whatever_the_headers_say() {
    // Nothing follows the head: waiting for the announced body would meet end of stream.
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    assert_eq!(
        scripted(head, 64, true, MAX).await.unwrap(),
        ok(200, 0, true)
    );
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        scripted(chunked, 64, true, MAX).await.unwrap(),
        ok(200, 0, true)
    );
    let no_content = b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(
        scripted(no_content, 64, false, MAX).await.unwrap(),
        ok(204, 0, true)
    );
    let not_modified = b"HTTP/1.1 304 Not Modified\r\n\r\n";
    assert_eq!(
        scripted(not_modified, 64, false, MAX).await.unwrap(),
        ok(304, 0, true)
    );
    // Without HEAD the same head needs its body.
    let e = scripted(head, 64, false, MAX).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Body, "{}", e.message);
}

#[tokio::test]
async fn interim_responses_are_skipped_at_every_split() {
    let resp = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    for piece in 1..=resp.len() {
        assert_eq!(
            scripted(resp, piece, false, MAX).await.unwrap(),
            ok(200, 3, true),
            "piece {piece}"
        );
    }
    let switching = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
    assert_eq!(
        scripted(switching, 64, false, MAX).await.unwrap(),
        ok(101, 0, false)
    );
}

#[tokio::test]
async fn bodies_over_max_body_are_body_errors() {
    let length = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world".as_slice();
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
    let eof = b"HTTP/1.1 200 OK\r\n\r\nhello world";
    for resp in [length, chunked, eof] {
        let e = scripted(resp, 4, false, 10).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Body);
        assert_eq!(
            e.message,
            "body larger than the 10-byte limit (max_body_bytes)"
        );
        // Exactly at the limit is fine.
        assert_eq!(scripted(resp, 4, false, 11).await.unwrap().body_bytes, 11);
    }
}

#[tokio::test]
async fn malformed_responses_are_protocol_errors() {
    let cases: [(&[u8], &str); 7] = [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "invalid HTTP version"),
        (b"HTTP/1.1 2xx OK\r\n\r\n", "invalid response status"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
            "conflicting Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
            "invalid Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "missing chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\n0\r\n\r\n",
            "expected CRLF",
        ),
        (
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.0",
        ),
    ];
    for (resp, want) in cases {
        let e = scripted(resp, 3, false, MAX).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol, "{}", e.message);
        assert!(
            e.message.starts_with("malformed HTTP response: "),
            "{}",
            e.message
        );
        assert!(e.message.contains(want), "{:?} lacks {want:?}", e.message);
    }
}

#[tokio::test]
async fn a_close_before_the_head_is_protocol_and_mid_body_is_body() {
    let (addr, _server) =
        serve_one_connection(vec![b"HTTP/1.1 200 OK\r\nContent-Le".to_vec()]).await;
    let mut conn = H1Conn::new(TcpStream::connect(addr).await.unwrap());
    let e = bounded(conn.exchange(&get("/"), false, MAX))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol);
    assert_eq!(
        e.message,
        "connection closed before the response was complete"
    );

    for partial in [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello".to_vec(),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
    ] {
        let (addr, _server) = serve_one_connection(vec![partial]).await;
        let mut conn = H1Conn::new(TcpStream::connect(addr).await.unwrap());
        let e = bounded(conn.exchange(&get("/"), false, MAX))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Body, "{}", e.message);
        assert!(
            e.message.starts_with("connection closed before"),
            "{}",
            e.message
        );
        assert!(!conn.is_usable());
    }
}

#[tokio::test]
async fn heads_grow_the_buffer_up_to_64_kib_and_no_further() {
    let head_of = |pad: usize| {
        let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..pad / 1000 {
            r.extend_from_slice(b"X-Pad: ");
            r.resize(r.len() + 991, b'p');
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        r
    };
    let mut conn = H1Conn::new(Scripted::new(head_of(40_000), 1500));
    assert_eq!(
        bounded(conn.exchange(&get("/"), false, MAX)).await.unwrap(),
        ok(200, 0, true)
    );
    assert_eq!(conn.buf.len(), MAX_HEAD, "a 40 KB head grows the buffer");

    let e = scripted(&head_of(70_000), 1500, false, MAX)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol);
    assert_eq!(e.message, "response head larger than 64 KiB");
}

#[tokio::test]
async fn unrequested_bytes_after_a_response_retire_the_connection() {
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n";
    assert_eq!(
        scripted(resp, 4096, false, MAX).await.unwrap(),
        ok(200, 2, false)
    );
}

#[tokio::test]
async fn is_usable_notices_a_server_that_closed_an_idle_connection() {
    let (addr, server) = serve_one_connection(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
    ])
    .await;
    let mut conn = H1Conn::new(TcpStream::connect(addr).await.unwrap());
    assert!(
        bounded(conn.exchange(&get("/"), false, MAX))
            .await
            .unwrap()
            .reusable
    );
    bounded(server).await.unwrap(); // the server has now closed its end
    bounded(async {
        while conn.is_usable() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn an_exchange_cut_short_by_the_callers_timeout_leaves_the_connection_unusable() {
    let (client, _server) = tokio::io::duplex(1024);
    let mut conn = H1Conn::new(client);
    let cut = tokio::time::timeout(
        Duration::from_millis(20),
        conn.exchange(&get("/"), false, MAX),
    )
    .await;
    assert!(
        cut.is_err(),
        "nothing answers, so the exchange must still be waiting"
    );
    assert!(!conn.is_usable());
}

#[test]
fn requests_are_serialized_with_computed_content_length() {
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_static("api.test:8080"));
    headers.append(ACCEPT, HeaderValue::from_static("text/plain"));
    headers.append(ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
    let mut out = b"stale".to_vec();

    serialize_request(&mut out, &Method::GET, "/a?b=c", &headers, b"");
    let head = "host: api.test:8080\r\naccept: text/plain\r\naccept: application/json\r\n";
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("GET /a?b=c HTTP/1.1\r\n{head}\r\n")
    );

    serialize_request(&mut out, &Method::POST, "", &headers, b"");
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("POST / HTTP/1.1\r\n{head}content-length: 0\r\n\r\n")
    );

    serialize_request(&mut out, &Method::DELETE, "/x", &headers, b"0123456789");
    let want = format!("DELETE /x HTTP/1.1\r\n{head}content-length: 10\r\n\r\n0123456789");
    assert_eq!(String::from_utf8_lossy(&out), want);
}

#[test]
fn chunk_sizes_are_bounded() {
    let mut d = ChunkedBody::new(u64::MAX);
    let e = d.feed(b"10000000000000000\r\n").unwrap_err();
    assert!(e.message.contains("chunk size too large"), "{}", e.message);
    let mut d = ChunkedBody::new(u64::MAX);
    let long_ext = [b';'; MAX_CHUNK_LINE + 1];
    assert!(d.feed(b"1").is_ok() && d.feed(&long_ext).is_err());
}

/// A caller that keeps the body gets exactly its data bytes, whatever the framing and however
/// the reads split it (chunk-size lines and trailers are framing, never data).
#[tokio::test]
async fn kept_bodies_hold_only_data_bytes() {
    let responses: [&[u8]; 3] = [
        b"HTTP/1.1 201 Created\r\ncontent-length: 9\r\n\r\n{\"id\":42}",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4;x=y\r\n{\"id\r\n5\r\n\":42}\r\n0\r\nT: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{\"id\":42}",
    ];
    for response in responses {
        for piece in 1..response.len() {
            let mut conn = H1Conn::new(Scripted::new(response, piece));
            let mut body = b"stale".to_vec();
            let r = bounded(conn.exchange_into(&get("/x"), false, MAX, Some(&mut body), None))
                .await
                .unwrap();
            assert_eq!(body, b"{\"id\":42}", "piece {piece}");
            assert_eq!(r.body_bytes, 9);
        }
    }
}
