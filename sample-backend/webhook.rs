//! `POST /webhooks/whatsapp`: a Twilio-style WhatsApp webhook, the endpoint seed 000 loads.
//!
//! It does what a careful real receiver does and nothing more: it reads a bounded
//! form-urlencoded body, checks `X-Twilio-Signature` with the library's verifier, and answers
//! a repeated `MessageSid` idempotently, because Twilio retries a delivery it thinks failed and
//! the retry must not be processed twice. The set of seen ids is bounded so a long load run
//! cannot grow memory without limit.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use plimsoll::engine::sign::{verify_twilio_signature, TWILIO_SIGNATURE_HEADER};

use crate::reply::{self, ReplyBody};
use crate::routes::App;

/// Largest body accepted. Twilio's webhook forms are a few kilobytes; anything far bigger is
/// not a webhook.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest `MessageSid` accepted. Twilio's ids are 34 characters; the bound keeps the dedupe
/// set's memory proportional to its entry count.
const MAX_SID_LEN: usize = 64;

/// Ids remembered for duplicate detection; the oldest is forgotten past this.
pub const LEDGER_CAPACITY: usize = 100_000;

/// Header set on the answer to a delivery already seen.
const DUPLICATE_HEADER: &str = "x-plimsoll-duplicate";

/// The empty TwiML document: "received, send nothing back".
const TWIML_EMPTY: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

/// The `MessageSid`s seen recently, oldest first, bounded by `capacity`.
///
/// A `Mutex` rather than an async lock: it is held for one hash lookup and never across an
/// await, so contention costs nanoseconds.
#[derive(Debug)]
pub struct MessageLedger {
    capacity: usize,
    inner: Mutex<LedgerInner>,
}

#[derive(Debug, Default)]
struct LedgerInner {
    seen: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
}

impl MessageLedger {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(LedgerInner::default()),
        }
    }

    /// Records `sid`; true the first time it is seen (within the last `capacity` ids).
    pub fn first_sighting(&self, sid: &str) -> bool {
        // A poisoned lock only means another request panicked mid-insert; the set is still a
        // valid set, so keep serving rather than fail every webhook from then on.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.seen.contains(sid) {
            return false;
        }
        let sid: Arc<str> = Arc::from(sid);
        inner.seen.insert(Arc::clone(&sid));
        inner.order.push_back(sid);
        if inner.order.len() > self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.seen.remove(&oldest);
            }
        }
        true
    }
}

/// Handles one webhook delivery. Every outcome is counted in the app's stats.
pub async fn receive(app: &App, parts: &Parts, body: Incoming) -> Response<ReplyBody> {
    if let Some(kind) = parts.headers.get(CONTENT_TYPE) {
        // A missing content type is tolerated (some load tools omit it); a different one means
        // the client is not speaking this webhook's protocol.
        let media_type = kind.to_str().unwrap_or("").split(';').next().unwrap_or("");
        if !media_type
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        {
            return app.bad_request("expected an application/x-www-form-urlencoded body");
        }
    }
    let body: Bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            app.stats.bad_request.fetch_add(1, Relaxed);
            return reply::error(StatusCode::PAYLOAD_TOO_LARGE, "body larger than 64 KiB");
        }
        Err(_) => return app.bad_request("could not read the request body"),
    };
    if std::str::from_utf8(&body).is_err() {
        return app.bad_request("body is not UTF-8");
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();

    if !signature_is_valid(app, parts, &params) {
        app.stats.rejected_signature.fetch_add(1, Relaxed);
        return reply::error(
            StatusCode::FORBIDDEN,
            "missing or invalid X-Twilio-Signature",
        );
    }

    let Some(sid) = params
        .iter()
        .find(|(name, _)| name == "MessageSid")
        .map(|(_, value)| value.as_str())
    else {
        return app.bad_request("missing MessageSid");
    };
    if sid.is_empty() || sid.len() > MAX_SID_LEN {
        return app.bad_request("MessageSid must be 1 to 64 characters");
    }

    let mut response = reply::with_type(StatusCode::OK, reply::XML, ReplyBody::whole(TWIML_EMPTY));
    if app.ledger.first_sighting(sid) {
        app.stats.webhooks_accepted.fetch_add(1, Relaxed);
    } else {
        app.stats.duplicates.fetch_add(1, Relaxed);
        response
            .headers_mut()
            .insert(DUPLICATE_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// Checks the signature over `http://{Host}{path and query}` and the form parameters, the URL
/// Twilio would have signed had it called this address.
fn signature_is_valid(app: &App, parts: &Parts, params: &[(String, String)]) -> bool {
    let Some(signature) = parts
        .headers
        .get(TWILIO_SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // HTTP/2 carries the host in `:authority`, which hyper puts in the URI, not in `Host`.
    let host = parts
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return false;
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("http://{host}{path_and_query}");
    verify_twilio_signature(app.twilio_token.as_bytes(), &url, params, signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_detects_repeats() {
        let ledger = MessageLedger::new(10);
        assert!(ledger.first_sighting("SM1"));
        assert!(!ledger.first_sighting("SM1"));
        assert!(ledger.first_sighting("SM2"));
    }

    /// The bound is the point: past capacity the oldest id is forgotten, and memory stays put.
    #[test]
    fn ledger_forgets_the_oldest_past_capacity() {
        let ledger = MessageLedger::new(3);
        for sid in ["a", "b", "c", "d"] {
            assert!(ledger.first_sighting(sid));
        }
        // "a" was evicted by "d", so it counts as new again; "d" is still remembered.
        assert!(!ledger.first_sighting("d"));
        assert!(ledger.first_sighting("a"));
        let inner = ledger.inner.lock().expect("not poisoned");
        assert_eq!(inner.seen.len(), 3);
        assert_eq!(inner.order.len(), 3);
    }
}
