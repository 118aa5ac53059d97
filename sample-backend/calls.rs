//! The call-state API of seed 003: a call is created INITIATED and advances through RINGING
//! and ANSWERED to COMPLETED, one legal step at a time, so flows have a stateful progression
//! to capture ids from and check states against.
//!
//! - `POST /api/calls` (optional JSON body `{"to": "…"}`) → 201 `{"id","state","to"}` with a
//!   `Location` header;
//! - `POST /api/calls/{id}/ring|answer|complete` → 200 with the new state, 409 for an illegal
//!   transition, 404 for an unknown id;
//! - `GET /api/calls/{id}` → 200 `{"id","state","to"}`.
//!
//! Calls live in memory, bounded: beyond [`CAPACITY`] the oldest is forgotten, so a long load
//! run cannot grow the backend without limit. Ids are decimal numbers in creation order, which
//! lets a test read back what a run created, in order.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Method, Response, StatusCode};
use serde::Serialize;

use crate::reply::{self, ReplyBody};

/// Most calls kept; the oldest goes first.
pub const CAPACITY: usize = 100_000;
/// Largest creation body.
const MAX_BODY_BYTES: usize = 4 * 1024;
/// Longest `to` kept.
const MAX_TO: usize = 64;

const PREFIX: &str = "/api/calls";

/// The states of a call, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
enum CallState {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

impl CallState {
    /// The state an action leads to, if the action is legal from this state.
    fn after(self, action: &str) -> Option<CallState> {
        match (self, action) {
            (CallState::Initiated, "ring") => Some(CallState::Ringing),
            (CallState::Ringing, "answer") => Some(CallState::Answered),
            (CallState::Answered, "complete") => Some(CallState::Completed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct Call {
    id: String,
    state: CallState,
    to: String,
}

/// The store: calls by id, and ids in creation order for eviction.
#[derive(Debug, Default)]
pub struct Calls {
    inner: Mutex<Store>,
}

#[derive(Debug, Default)]
struct Store {
    next: u64,
    calls: HashMap<u64, Call>,
    order: VecDeque<u64>,
}

/// Whether a path belongs to this API.
pub fn owns(path: &str) -> bool {
    path == PREFIX || path.starts_with("/api/calls/")
}

/// Answers one request of this API.
pub async fn respond(
    calls: &Calls,
    method: &Method,
    path: &str,
    body: Incoming,
) -> Response<ReplyBody> {
    let rest = path.strip_prefix(PREFIX).unwrap_or("");
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method, parts.as_slice()) {
        (&Method::POST, []) => create(calls, body).await,
        (_, []) => reply::method_not_allowed("POST"),
        (&Method::GET | &Method::HEAD, [id]) => match calls.get(id) {
            Some(c) => reply::json(StatusCode::OK, &c),
            None => reply::error(StatusCode::NOT_FOUND, "no such call"),
        },
        (_, [_]) => reply::method_not_allowed("GET, HEAD"),
        (&Method::POST, [id, action]) if matches!(*action, "ring" | "answer" | "complete") => {
            calls.advance(id, action)
        }
        (_, [_, "ring" | "answer" | "complete"]) => reply::method_not_allowed("POST"),
        _ => reply::not_found(),
    }
}

async fn create(calls: &Calls, body: Incoming) -> Response<ReplyBody> {
    let bytes: Bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return reply::error(
                StatusCode::BAD_REQUEST,
                "body unreadable or larger than 4 KiB",
            )
        }
    };
    let to = if bytes.is_empty() {
        String::new()
    } else {
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) => match v.get("to") {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.chars().take(MAX_TO).collect(),
                Some(other) => other.to_string().chars().take(MAX_TO).collect(),
            },
            Err(_) => return reply::error(StatusCode::BAD_REQUEST, "expected a JSON body"),
        }
    };
    let call = calls.create(to);
    let mut response = reply::json(StatusCode::CREATED, &call);
    if let Ok(v) = HeaderValue::from_str(&format!("{PREFIX}/{}", call.id)) {
        response.headers_mut().insert(LOCATION, v);
    }
    response
}

impl Calls {
    fn create(&self, to: String) -> Call {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.next += 1;
        let id = s.next;
        let call = Call {
            id: id.to_string(),
            state: CallState::Initiated,
            to,
        };
        s.calls.insert(id, call.clone());
        s.order.push_back(id);
        while s.order.len() > CAPACITY {
            if let Some(old) = s.order.pop_front() {
                s.calls.remove(&old);
            }
        }
        call
    }

    fn get(&self, id: &str) -> Option<Call> {
        let id: u64 = id.parse().ok()?;
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.calls.get(&id).cloned()
    }

    fn advance(&self, id: &str, action: &str) -> Response<ReplyBody> {
        let Ok(n) = id.parse::<u64>() else {
            return reply::error(StatusCode::NOT_FOUND, "no such call");
        };
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(call) = s.calls.get_mut(&n) else {
            return reply::error(StatusCode::NOT_FOUND, "no such call");
        };
        match call.state.after(action) {
            Some(next) => {
                call.state = next;
                reply::json(StatusCode::OK, &*call)
            }
            None => {
                let body = serde_json::json!({
                    "error": format!("cannot {action} a call that is {:?}", call.state),
                    "id": call.id,
                    "state": call.state,
                });
                reply::json(StatusCode::CONFLICT, &body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_advance_only_in_order() {
        use CallState::*;
        assert_eq!(Initiated.after("ring"), Some(Ringing));
        assert_eq!(Ringing.after("answer"), Some(Answered));
        assert_eq!(Answered.after("complete"), Some(Completed));
        assert_eq!(Initiated.after("answer"), None);
        assert_eq!(Completed.after("ring"), None);
    }

    #[test]
    fn the_store_forgets_the_oldest_beyond_capacity() {
        let c = Calls::default();
        for _ in 0..CAPACITY + 2 {
            c.create(String::new());
        }
        assert!(c.get("1").is_none() && c.get("2").is_none());
        assert!(c.get("3").is_some());
        assert_eq!(c.inner.lock().unwrap().calls.len(), CAPACITY);
        assert_eq!(c.advance("3", "answer").status(), StatusCode::CONFLICT);
        assert_eq!(c.advance("3", "ring").status(), StatusCode::OK);
        assert_eq!(c.advance("x", "ring").status(), StatusCode::NOT_FOUND);
    }
}
