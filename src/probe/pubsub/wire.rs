//! The pub/sub probe's network work: WebSocket subscribers (ws:// and wss://), and publishers
//! that POST a message over HTTP/1.1 or `PUBLISH` it on Redis. It counts nothing itself:
//! subscribers hand deliveries to their tracker, publishers report each publish's outcome.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::tracker::{Receipt, SequenceTracker, Stamp};
use crate::config::{HttpVersion, TlsConfig};
use crate::engine::http::{client_tls_config, BaseUrl, Conn, Endpoint};

/// A byte stream a WebSocket can run on: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Largest answer read from a publish endpoint.
const MAX_PUBLISH_ANSWER: u64 = 64 * 1024;

/// Microseconds since the Unix epoch: the clock both ends of a delivery read.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Opens a WebSocket to `url` (`ws://` or `wss://`).
pub async fn open_socket(
    url: &str,
    tls: &TlsConfig,
) -> Result<WebSocketStream<Box<dyn Io>>, String> {
    let (secure, rest) = if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("ws://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not a ws:// or wss:// URL"));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let base = Endpoint::parse_base(&format!(
        "{}://{authority}",
        if secure { "https" } else { "http" }
    ))?;
    let tcp = tokio::net::TcpStream::connect((base.host.as_str(), base.port))
        .await
        .map_err(|e| format!("connect to {authority}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if secure {
        let cfg = client_tls_config(tls, HttpVersion::Http1)?;
        let name = tls.server_name.clone().unwrap_or_else(|| base.host.clone());
        let name = rustls_pki_types::ServerName::try_from(name)
            .map_err(|_| "not a valid TLS server name".to_string())?;
        let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {authority}: {e}"))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| format!("WebSocket handshake with {url}: {e}"))?;
    Ok(ws)
}

/// What a subscriber ends with.
pub struct SubscriberEnd {
    pub tracker: SequenceTracker,
    /// Text messages that were not this run's.
    pub foreign: u64,
    /// Why the connection ended before it was asked to, if it did.
    pub error: Option<String>,
}

/// Reads deliveries until `done` changes or the connection ends. `received` counts distinct
/// deliveries of all subscribers, so the run can stop waiting once everything arrived.
pub async fn listen(
    mut ws: WebSocketStream<Box<dyn Io>>,
    run_id: &str,
    mut tracker: SequenceTracker,
    mut done: watch::Receiver<bool>,
    received: Arc<AtomicU64>,
) -> SubscriberEnd {
    let mut foreign = 0;
    let mut error = None;
    loop {
        let next = tokio::select! {
            m = ws.next() => m,
            _ = done.changed() => break,
        };
        let text = match next {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
                Ok(t) => t.into(),
                Err(_) => {
                    foreign += 1;
                    continue;
                }
            },
            Some(Ok(Message::Close(_))) | None => {
                error = Some("the server closed the connection".to_string());
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                error = Some(format!("reading: {e}"));
                break;
            }
        };
        let now = unix_micros();
        match Stamp::find(text.as_str()) {
            Some(s) if s.plimsoll == run_id => {
                let latency = Duration::from_micros(now.saturating_sub(s.sent_us));
                if matches!(
                    tracker.receive(s.seq, latency),
                    Receipt::Delivered | Receipt::OutOfOrder
                ) {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => foreign += 1,
        }
    }
    // A polite close; the server's answer is not waited for long.
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
    SubscriberEnd {
        tracker,
        foreign,
        error,
    }
}

/// Where publishes go.
// One per publisher task, built once before publishing starts: the size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Publisher {
    Http(HttpPublisher),
    Redis {
        conn: ::redis::aio::MultiplexedConnection,
        channel: String,
    },
}

/// An HTTP/1.1 publish endpoint and one kept-alive connection to it.
pub struct HttpPublisher {
    endpoint: Endpoint,
    addrs: Vec<std::net::SocketAddr>,
    /// The request head up to the `Content-Length` value.
    head: String,
    conn: Option<Conn>,
}

impl HttpPublisher {
    /// For `url` (absolute), with extra headers (the target's).
    pub async fn new(
        url: &str,
        tls: &TlsConfig,
        headers: &[(String, String)],
    ) -> Result<Self, String> {
        let (without_query, query) = match url.split_once('?') {
            Some((u, q)) => (u, Some(q)),
            None => (url, None),
        };
        let base: BaseUrl = Endpoint::parse_base(without_query)?;
        let mut path = if base.path.is_empty() {
            "/".to_string()
        } else {
            base.path.clone()
        };
        if let Some(q) = query {
            path.push('?');
            path.push_str(q);
        }
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: plimsoll\r\n\
             Content-Type: application/json\r\n",
            base.authority
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("Content-Length: ");
        let endpoint = Endpoint::new(base, HttpVersion::Http1, tls)?;
        let addrs = endpoint.resolve().await.map_err(|e| e.message)?;
        Ok(HttpPublisher {
            endpoint,
            addrs,
            head,
            conn: None,
        })
    }
}

impl Publisher {
    /// Publishes one message; the error is its kind and message.
    pub async fn publish(&mut self, body: &str) -> Result<(), (&'static str, String)> {
        match self {
            Publisher::Redis { conn, channel } => ::redis::cmd("PUBLISH")
                .arg(&*channel)
                .arg(body)
                .query_async::<i64>(conn)
                .await
                .map(|_| ())
                .map_err(|e| (crate::probe::redis_client::error_kind(&e), e.to_string())),
            Publisher::Http(p) => {
                let kept = p.conn.take().and_then(|mut c| c.is_usable().then_some(c));
                let mut c = match kept {
                    Some(c) => c,
                    None => p
                        .endpoint
                        .connect(&p.addrs)
                        .await
                        .map_err(|e| (e.kind.as_str(), e.message))?,
                };
                let request = format!("{}{}\r\n\r\n{body}", p.head, body.len());
                let answer = c
                    .exchange_h1(request.as_bytes(), false, MAX_PUBLISH_ANSWER, None, None)
                    .await
                    .map_err(|e| (e.kind.as_str(), e.message))?;
                if answer.reusable {
                    p.conn = Some(c);
                }
                if (200..300).contains(&answer.status) {
                    Ok(())
                } else {
                    Err((
                        "status",
                        format!("the publish endpoint answered {}", answer.status),
                    ))
                }
            }
        }
    }
}
