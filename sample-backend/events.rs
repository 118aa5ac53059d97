//! Event fan-out for seed 003's pub/sub delivery checks: `GET /ws/events` is a WebSocket
//! that forwards every event to every connected client, and `POST /events` publishes one.
//!
//! With `--redis-url` the events come from a Redis pub/sub channel (one subscription for the
//! whole backend, fanned out in process), and `POST /events` publishes to that channel, so a
//! prober may publish either over HTTP or with Redis `PUBLISH`. Without it, `POST /events`
//! feeds the in-process fan-out directly.
//!
//! Knobs that make delivery faults predictable for tests: `POST /events?drop=1` accepts an
//! event and never forwards it; `GET /ws/events?drop_every=N` makes that one connection skip
//! every Nth event and `duplicate_every=N` send every Nth twice. Nothing is logged.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::reply::{self, ReplyBody};

/// The WebSocket route.
pub const WS_PATH: &str = "/ws/events";
/// The publish route.
pub const PUBLISH_PATH: &str = "/events";
/// Events a slow client may fall behind by before it loses some (it then skips ahead).
const FAN_OUT_CAPACITY: usize = 8192;
/// Largest event accepted by `POST /events`.
const MAX_EVENT_BYTES: usize = 64 * 1024;

/// The fan-out and where published events go. Owned by `App` for the server's lifetime.
#[derive(Debug)]
pub struct Events {
    fan_out: broadcast::Sender<Utf8Bytes>,
    /// With Redis: the connection `POST /events` publishes on, and the channel.
    redis: Option<(::redis::aio::MultiplexedConnection, String)>,
    /// Events accepted and deliberately not forwarded (`?drop=1`).
    pub dropped: AtomicU64,
}

impl Events {
    /// The in-process fan-out alone.
    pub fn in_process() -> Self {
        Events {
            fan_out: broadcast::channel(FAN_OUT_CAPACITY).0,
            redis: None,
            dropped: AtomicU64::new(0),
        }
    }

    /// Subscribes to `channel` on Redis and forwards its messages to the WebSocket clients.
    pub async fn with_redis(url: &str, channel: &str) -> anyhow::Result<Self> {
        let client = ::redis::Client::open(url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        let publisher = client.get_multiplexed_async_connection().await?;
        let events = Events {
            redis: Some((publisher, channel.to_string())),
            ..Events::in_process()
        };
        let fan_out = events.fan_out.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(m) = messages.next().await {
                if let Ok(text) = m.get_payload::<String>() {
                    // No client connected is not an error.
                    let _ = fan_out.send(text.into());
                }
            }
            eprintln!("plimsoll-sample-backend: the Redis subscription ended");
        });
        Ok(events)
    }
}

/// Whether the path is one of this module's routes.
pub fn owns(path: &str) -> bool {
    path == WS_PATH || path == PUBLISH_PATH
}

/// Answers `GET /ws/events` and `POST /events`.
pub async fn respond(events: &Events, request: Request<Incoming>) -> Response<ReplyBody> {
    let path = request.uri().path();
    match (path, request.method()) {
        (WS_PATH, &Method::GET) => upgrade(events, request),
        (WS_PATH, _) => reply::method_not_allowed("GET"),
        (_, &Method::POST) => publish(events, request).await,
        _ => reply::method_not_allowed("POST"),
    }
}

async fn publish(events: &Events, request: Request<Incoming>) -> Response<ReplyBody> {
    let drop = query_u64(request.uri().query(), "drop").unwrap_or(0) != 0;
    let body = match Limited::new(request.into_body(), MAX_EVENT_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply::error(StatusCode::PAYLOAD_TOO_LARGE, "event too large"),
    };
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return reply::error(StatusCode::BAD_REQUEST, "an event is UTF-8 text");
    };
    if drop {
        events.dropped.fetch_add(1, Relaxed);
        return reply::json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "dropped": true }),
        );
    }
    match &events.redis {
        Some((conn, channel)) => {
            let mut conn = conn.clone();
            let sent = ::redis::cmd("PUBLISH")
                .arg(channel)
                .arg(text)
                .query_async::<i64>(&mut conn)
                .await;
            match sent {
                Ok(n) => reply::json(StatusCode::ACCEPTED, &serde_json::json!({ "receivers": n })),
                Err(e) => reply::error(StatusCode::SERVICE_UNAVAILABLE, &format!("redis: {e}")),
            }
        }
        None => {
            let n = events.fan_out.send(text.into()).unwrap_or(0);
            reply::json(StatusCode::ACCEPTED, &serde_json::json!({ "receivers": n }))
        }
    }
}

/// Completes the WebSocket handshake and hands the connection to a forwarding task.
fn upgrade(events: &Events, mut request: Request<Incoming>) -> Response<ReplyBody> {
    let wants_ws = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        return reply::error(StatusCode::BAD_REQUEST, "a WebSocket upgrade is expected");
    };
    if !wants_ws {
        return reply::error(StatusCode::BAD_REQUEST, "a WebSocket upgrade is expected");
    }
    let query = request.uri().query();
    let drop_every = query_u64(query, "drop_every").unwrap_or(0);
    let duplicate_every = query_u64(query, "duplicate_every").unwrap_or(0);
    // Subscribed before the 101 goes out: an event published right after the client saw the
    // handshake complete must reach it.
    let mut feed = events.fan_out.subscribe();
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let mut n = 0u64;
        loop {
            tokio::select! {
                event = feed.recv() => match event {
                    Ok(text) => {
                        n += 1;
                        if drop_every > 0 && n % drop_every == 0 {
                            continue;
                        }
                        let twice = duplicate_every > 0 && n % duplicate_every == 0;
                        for _ in 0..(1 + usize::from(twice)) {
                            if ws.send(Message::Text(text.clone())).await.is_err() {
                                return;
                            }
                        }
                    }
                    // A client that fell behind lost events; it goes on with the next.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        let _ = ws.close(None).await;
    });
    let mut response = Response::new(ReplyBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(accept) = header::HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", accept);
    }
    response
}

/// Reads the first `name` parameter of the query as an unsigned integer.
fn query_u64(query: Option<&str>, name: &str) -> Option<u64> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
}
