//! The sample backend over real sockets: the built binary is started on `127.0.0.1:0`, its
//! announced address is read from stdout, and each test talks HTTP to it with hyper's
//! low-level client. Every wait is bounded, and the child is killed even when a test fails.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use plimsoll::engine::sign::{twilio_signature, TWILIO_SIGNATURE_HEADER};
use tokio::net::TcpStream;

const TOKEN: &str = "integration-test-token";
/// Upper bound on any single step, so a hung backend fails the test instead of stalling CI.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running backend; dropping it kills the process, which also covers a panicking test.
struct Backend {
    child: Child,
    addr: SocketAddr,
    // Kept open so the backend never sees a closed stdout.
    _stdout: BufReader<ChildStdout>,
}

impl Backend {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_plimsoll-sample-backend"))
            .args(["--listen", "127.0.0.1:0", "--twilio-auth-token", TOKEN])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sample backend starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        // Wrap the child first so it is killed even if the announcement never comes.
        let mut guard = KillOnDrop(Some(child));
        // Reading a pipe blocks with no timeout of its own, so read on a helper thread.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send((read, reader));
        });
        let (line, reader) = rx
            .recv_timeout(STEP_TIMEOUT)
            .expect("backend announces its address in time");
        let line = line.expect("stdout is readable");
        let addr = line
            .trim_end()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        let child = guard.0.take().expect("child still owned");
        Self {
            child,
            addr,
            _stdout: reader,
        }
    }

    /// A fresh HTTP/1.1 keep-alive connection.
    async fn http1(&self) -> Client {
        let stream = within(TcpStream::connect(self.addr))
            .await
            .expect("connects");
        let (sender, connection) = within(http1::handshake(TokioIo::new(stream)))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        Client {
            sender: Sender::H1(sender),
            host: self.addr.to_string(),
        }
    }

    /// A fresh HTTP/2 connection with prior knowledge (no upgrade dance).
    async fn http2(&self) -> Client {
        let stream = within(TcpStream::connect(self.addr))
            .await
            .expect("connects");
        let (sender, connection) =
            within(http2::handshake(TokioExecutor::new(), TokioIo::new(stream)))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        Client {
            sender: Sender::H2(sender),
            host: self.addr.to_string(),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a child that has not been handed over yet.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

struct Client {
    sender: Sender,
    host: String,
}

/// What the tests look at in a response.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Client {
    async fn get(&mut self, path: &str) -> Answer {
        let request = Request::get(path)
            .header(HOST, &self.host)
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        self.send(request).await
    }

    /// Sends a request and reads the whole body.
    async fn send(&mut self, mut request: Request<Full<Bytes>>) -> Answer {
        let response = match &mut self.sender {
            Sender::H1(sender) => within(sender.send_request(request)).await,
            Sender::H2(sender) => {
                // HTTP/2 names the host in the URI (`:authority`), not in a Host header.
                let uri = format!("http://{}{}", self.host, request.uri());
                *request.uri_mut() = uri.parse().expect("valid URI");
                request.headers_mut().remove(HOST);
                within(sender.send_request(request)).await
            }
        }
        .expect("response arrives");
        let (parts, body) = response.into_parts();
        let body = within(body.collect())
            .await
            .expect("body arrives")
            .to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// Runs a future with the step timeout; a timeout is a test failure.
async fn within<F, T, E>(future: F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(STEP_TIMEOUT, future).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => panic!("step took longer than {STEP_TIMEOUT:?}"),
    }
}

fn json(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

#[tokio::test]
async fn health_reads_and_unknown_paths() {
    let backend = Backend::start();
    let mut client = backend.http1().await;

    let health = client.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(json(&health.body), serde_json::json!({ "status": "ok" }));

    let items = client.get("/api/items").await;
    assert_eq!(items.status, StatusCode::OK);
    let items = json(&items.body);
    assert_eq!(items.as_array().map(Vec::len), Some(20));

    let one = client.get("/api/items/7").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(json(&one.body), items[6]);
    assert_eq!(
        client.get("/api/items/0").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        client.get("/api/items/x").await.status,
        StatusCode::NOT_FOUND
    );

    let missing = client.get("/no/such/path").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(json(&missing.body)["error"].is_string());

    assert_eq!(
        client.get("/status/503").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        client.get("/status/204").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        client.get("/status/600").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        client.get("/status/abc").await.status,
        StatusCode::BAD_REQUEST
    );

    // The same port speaks HTTP/2 with prior knowledge.
    let mut h2 = backend.http2().await;
    let health = h2.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(json(&health.body), serde_json::json!({ "status": "ok" }));
}

/// Builds a webhook delivery signed the way Twilio signs it (or with `signature` if given).
fn webhook(host: &str, params: &[(&str, &str)], signature: Option<&str>) -> Request<Full<Bytes>> {
    let path = "/webhooks/whatsapp";
    let url = format!("http://{host}{path}");
    let signed = twilio_signature(TOKEN.as_bytes(), &url, params);
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(HOST, host)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(TWILIO_SIGNATURE_HEADER, signature.unwrap_or(&signed))
        .body(Full::new(Bytes::from(body)))
        .expect("valid request")
}

#[tokio::test]
async fn webhook_checks_signatures_and_deduplicates() {
    let backend = Backend::start();
    let mut client = backend.http1().await;
    let host = backend.addr.to_string();
    let delivery = [
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("From", "whatsapp:+15550002"),
        ("To", "whatsapp:+15550001"),
        ("Body", "hello & welcome"),
    ];

    let first = client.send(webhook(&host, &delivery, None)).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.headers.get(CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"text/xml"[..])
    );
    assert_eq!(
        first.body,
        &br#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#[..]
    );
    assert!(first.headers.get("x-plimsoll-duplicate").is_none());

    // Twilio's retry of the same delivery: still 200, marked, not processed twice.
    let retry = client.send(webhook(&host, &delivery, None)).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.body, first.body);
    assert_eq!(
        retry
            .headers
            .get("x-plimsoll-duplicate")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );

    let forged = client
        .send(webhook(&host, &delivery, Some("bm90IGEgc2lnbmF0dXJl")))
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // Signed with the wrong host: the URL is part of what is signed.
    let elsewhere = twilio_signature(
        TOKEN.as_bytes(),
        "http://example.test/webhooks/whatsapp",
        &delivery,
    );
    let moved = client
        .send(webhook(&host, &delivery, Some(&elsewhere)))
        .await;
    assert_eq!(moved.status, StatusCode::FORBIDDEN);

    let mut unsigned = webhook(&host, &delivery, None);
    unsigned.headers_mut().remove(TWILIO_SIGNATURE_HEADER);
    assert_eq!(client.send(unsigned).await.status, StatusCode::FORBIDDEN);

    let no_sid = client
        .send(webhook(&host, &[("Body", "no id")], None))
        .await;
    assert_eq!(no_sid.status, StatusCode::BAD_REQUEST);
    assert!(json(&no_sid.body)["error"].is_string());

    let mut garbage = webhook(&host, &delivery, None);
    *garbage.body_mut() = Full::new(Bytes::from_static(b"\xff\xfe\x00not form"));
    assert_eq!(client.send(garbage).await.status, StatusCode::BAD_REQUEST);

    // A signed delivery over HTTP/2, where the host comes from `:authority`.
    let mut h2 = backend.http2().await;
    let fresh = [("MessageSid", "SMh2")];
    let mut over_h2 = webhook(&host, &fresh, None);
    over_h2.headers_mut().remove(HOST);
    assert_eq!(h2.send(over_h2).await.status, StatusCode::OK);

    let stats = json(&client.get("/api/stats").await.body);
    assert_eq!(stats["webhooks_accepted"], 2, "{stats}");
    assert_eq!(stats["duplicates"], 1, "{stats}");
    assert_eq!(stats["rejected_signature"], 3, "{stats}");
    assert_eq!(stats["bad_request"], 2, "{stats}");
    assert_eq!(stats["requests"], 9, "{stats}");
}

#[tokio::test]
async fn delay_is_precise() {
    let backend = Backend::start();
    let mut client = backend.http1().await;
    // Warm the connection so the first measurement does not include setup.
    assert_eq!(client.get("/health").await.status, StatusCode::OK);

    let mut taken = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        let answer = client.get("/delay?ms=20").await;
        let elapsed = start.elapsed();
        assert_eq!(answer.status, StatusCode::OK);
        // Never early, whatever the machine is doing.
        assert!(
            elapsed >= Duration::from_millis(20),
            "/delay?ms=20 answered after {elapsed:?}"
        );
        taken.push(elapsed);
    }
    taken.sort();
    // Late is allowed once: the tests run in parallel on machines with as few as two cores, and
    // one unlucky scheduling delay says nothing about the backend.
    assert!(
        taken[8] < Duration::from_millis(25),
        "more than one /delay?ms=20 took 25 ms or longer: {taken:?}"
    );
    // Load tests compare a p50 against 20 ms within half a millisecond. This client's own
    // overhead (a debug build, woken from idle) takes some of that, but a timer with
    // millisecond granularity would put the median near 21 ms and fail here.
    assert!(
        taken[5] < Duration::from_micros(21_000),
        "median of /delay?ms=20 is {:?}: {taken:?}",
        taken[5]
    );

    assert_eq!(client.get("/delay").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        client.get("/delay?ms=60001").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn stall_holds_requests_inside_freeze_windows() {
    let backend = Backend::start();
    let mut client = backend.http1().await;

    // Freeze 200 ms of every 400 ms. Over a second, requests that land at the start of a
    // window wait most of 200 ms and requests between windows answer at once.
    let mut waits = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let start = Instant::now();
        let answer = client.get("/stall?period_ms=400&freeze_ms=200").await;
        assert_eq!(answer.status, StatusCode::OK);
        waits.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let held = waits
        .iter()
        .filter(|w| **w >= Duration::from_millis(100))
        .count();
    let quick = waits
        .iter()
        .filter(|w| **w < Duration::from_millis(20))
        .count();
    assert!(held >= 1, "no request was held: {waits:?}");
    assert!(quick >= 1, "no request answered at once: {waits:?}");
    assert!(
        waits.iter().all(|w| *w < Duration::from_millis(300)),
        "a request waited longer than a freeze: {waits:?}"
    );

    for bad in [
        "/stall?period_ms=100&freeze_ms=100",
        "/stall?period_ms=0",
        "/stall?freeze_ms=0",
        "/stall?period_ms=ten",
    ] {
        assert_eq!(
            client.get(bad).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn bytes_returns_exactly_n_bytes() {
    let backend = Backend::start();
    let mut client = backend.http1().await;

    let answer = client.get("/bytes?n=1000000").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body.len(), 1_000_000);
    assert_eq!(
        answer.headers.get(CONTENT_LENGTH).map(|v| v.as_bytes()),
        Some(&b"1000000"[..])
    );

    // The connection stays usable after a large body.
    assert_eq!(client.get("/bytes?n=0").await.body.len(), 0);
    assert_eq!(
        client.get("/bytes?n=209715201").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_exits_cleanly() {
    let mut backend = Backend::start();
    let mut client = backend.http1().await;
    assert_eq!(client.get("/health").await.status, StatusCode::OK);

    let pid = backend.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());

    let deadline = Instant::now() + STEP_TIMEOUT;
    let status = loop {
        if let Some(status) = backend.child.try_wait().expect("child can be waited on") {
            break status;
        }
        assert!(Instant::now() < deadline, "backend ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status}");
}
