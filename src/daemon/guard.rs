//! The daemon's side of the guardrails: the kill switch's endpoints (`POST /api/v1/pause`,
//! `POST /api/v1/resume`, `GET /api/v1/pause`) and the check the scheduler makes before it
//! starts a load probe (pause, blackout).
//!
//! Kept apart from `http.rs` so that the endpoints' plumbing and the guardrails change
//! independently. This module flips the pause flag and answers; stopping running probes is
//! the probe monitor's job (`probe::guard`), which sees the flag within a second.

use std::time::SystemTime;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;

use super::Shared;
use crate::probe::guard::PauseSource;
use crate::telemetry::SkipReason;

const PAUSE: &str = "/api/v1/pause";
const RESUME: &str = "/api/v1/resume";

/// Answers the kill-switch endpoints; `None` for every other path.
pub fn route<B>(req: &Request<B>, shared: &Shared) -> Option<Response<Full<Bytes>>> {
    let path = req.uri().path();
    if path != PAUSE && path != RESUME {
        return None;
    }
    if let Some(token) = shared.token() {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
        if !ok {
            let mut r = json(
                StatusCode::UNAUTHORIZED,
                r#"{"error":"bearer token required"}"#.to_string(),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return Some(r);
        }
    }
    let guard = shared.guard();
    match (req.method(), path) {
        (&Method::POST, PAUSE) => {
            guard.pause();
            tracing::warn!("load paused through {PAUSE}: no load probe starts, running ones stop");
        }
        (&Method::POST, RESUME) => {
            guard.resume();
            tracing::info!("load resumed through {RESUME}");
        }
        (&Method::GET | &Method::HEAD, PAUSE) => {}
        _ => {
            let mut r = json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"POST to pause or resume; GET /api/v1/pause for the state"}"#
                    .to_string(),
            );
            r.headers_mut().insert(
                header::ALLOW,
                header::HeaderValue::from_static("GET, HEAD, POST"),
            );
            return Some(r);
        }
    }
    let by = match guard.paused() {
        Some(PauseSource::Api) => r#""api""#,
        Some(PauseSource::File) => r#""file""#,
        None => "null",
    };
    Some(json(
        StatusCode::OK,
        format!(r#"{{"paused":{},"by":{by}}}"#, guard.paused().is_some()),
    ))
}

/// Why a load probe may not start now, and the skip reason to count.
pub fn hold_reason(shared: &Shared, now: SystemTime) -> Option<(SkipReason, String)> {
    let guard = shared.guard();
    let why = guard.hold_reason(now)?;
    let reason = if guard.paused().is_some() {
        SkipReason::Paused
    } else {
        SkipReason::Guardrail
    };
    Some((reason, why))
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

/// Compares without an early exit, so the answer's timing does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
