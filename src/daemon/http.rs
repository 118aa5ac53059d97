//! The daemon's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`, `/api/v1/probes` and a
//! plain status page at `/`.
//!
//! `/healthz` answers whether this process and its scheduler loop are alive; it never looks at
//! targets or dependencies, so a target outage cannot get the daemon restarted.
//!
//! The endpoints run on their own runtime and threads ([`start`]), never on the scheduler's:
//! a scrape flood must not delay a probe's start. Encoding `/metrics` and the probe listing
//! costs CPU in proportion to the probes, so it goes on blocking threads and an encoding is
//! reused until the series change; `/healthz` and `/readyz` answer from the async workers.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::Shared;

/// The scheduler loop goes round at least once a second; this much silence means it is stuck.
const HEARTBEAT_LIMIT: Duration = Duration::from_secs(15);

/// Worker threads of the endpoints' runtime: enough that `/healthz` is not queued behind a
/// scrape, few enough to leave the cores to probes.
const HTTP_WORKERS: usize = 2;

/// How long an encoding of `/metrics` is reused while nothing was recorded (the OTLP drop
/// counters move without a recorded event; they are at most this stale).
const METRICS_REUSE: Duration = Duration::from_secs(1);

/// Serves the endpoints on a runtime of their own, on threads of their own, until the process
/// exits. `listener` must be non-blocking.
pub fn start(listener: std::net::TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(HTTP_WORKERS)
        .max_blocking_threads(HTTP_WORKERS)
        .thread_name("plimsoll-http")
        .enable_all()
        .build()?;
    let listener = {
        let _in_rt = rt.enter();
        TcpListener::from_std(listener)?
    };
    std::thread::Builder::new()
        .name("plimsoll-http".into())
        .spawn(move || rt.block_on(serve(listener, shared)))?;
    Ok(())
}

/// Accepts connections until the process exits.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&req, &shared).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Duration::from_secs(10))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!("endpoint connection ended: {e}");
            }
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(body.into()))
        .expect("static headers are valid")
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    reply(status, "text/plain; charset=utf-8", body)
}

async fn route(req: &Request<Incoming>, shared: &Arc<Shared>) -> Reply {
    if let Some(r) = super::guard::route(req, shared) {
        return r;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/healthz" => {
            let age = shared.heartbeat_age();
            if age <= HEARTBEAT_LIMIT {
                text(StatusCode::OK, "ok\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("scheduler loop silent for {:.1} s\n", age.as_secs_f64()),
                )
            }
        }
        "/readyz" => {
            // The store is reported, not required: while it is down runs wait in its spool
            // and everything else works.
            let h = shared.store_health();
            let store = match &h.problem {
                None => format!("store: ok {} ({} spooled)\n", h.location, h.spooled),
                Some(p) => format!("store: down {} ({} spooled): {p}\n", h.location, h.spooled),
            };
            if shared.is_ready() {
                text(StatusCode::OK, format!("ready\n{store}"))
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready\n{store}"),
                )
            }
        }
        path @ ("/metrics" | "/api/v1/probes" | "/") => {
            if let Some(denied) = check_token(req, shared) {
                return denied;
            }
            match path {
                "/metrics" => {
                    // Prometheus asks for OpenMetrics first; everything else gets the classic
                    // text format.
                    let wants_om = req
                        .headers()
                        .get_all(header::ACCEPT)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .any(|v| v.contains("application/openmetrics-text"));
                    let content_type = if wants_om {
                        crate::telemetry::OPENMETRICS_CONTENT_TYPE
                    } else {
                        crate::telemetry::TEXT_CONTENT_TYPE
                    };
                    let s = shared.clone();
                    match tokio::task::spawn_blocking(move || s.metrics_body(wants_om)).await {
                        Ok(body) => reply(StatusCode::OK, content_type, body),
                        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
                    }
                }
                "/api/v1/probes" => {
                    let s = shared.clone();
                    let body = tokio::task::spawn_blocking(move || {
                        serde_json::json!({ "probes": s.probes() }).to_string()
                    })
                    .await;
                    match body {
                        Ok(body) => reply(StatusCode::OK, "application/json", body),
                        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
                    }
                }
                _ => reply(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    status_page(shared),
                ),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The last encodings of `/metrics`, one per format, with the series generation and time.
#[derive(Default)]
pub struct MetricsCache {
    slots: std::sync::Mutex<[Option<(u64, std::time::Instant, Bytes)>; 2]>,
}

impl Shared {
    /// `/metrics` in OpenMetrics (`om`) or classic text, reused while the series are unchanged.
    fn metrics_body(&self, om: bool) -> Bytes {
        let generation = self.telemetry.generation();
        let i = usize::from(om);
        let mut slots = self
            .metrics_cache
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((g, at, body)) = &slots[i] {
            if *g == generation && at.elapsed() < METRICS_REUSE {
                return body.clone();
            }
        }
        // Encoded under the lock: a flood of scrapes waits for one encoding, not many.
        let body = Bytes::from(if om {
            self.telemetry.encode_openmetrics()
        } else {
            self.telemetry.encode_text()
        });
        slots[i] = Some((generation, std::time::Instant::now(), body.clone()));
        body
    }
}

fn check_token(req: &Request<Incoming>, shared: &Shared) -> Option<Reply> {
    let want = shared.token()?;
    let got = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if got.is_some_and(|g| constant_time_eq(g.as_bytes(), want.as_bytes())) {
        return None;
    }
    let mut r = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    Some(r)
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 9110 §11.1), so `bearer` and `BEARER` are accepted too.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Compares without stopping at the first difference, so timing does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn status_page(shared: &Shared) -> String {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Plimsoll</title>\
         <style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em .8em;text-align:left}\
         .excellent,.good{color:#1a7f37}.warning{color:#9a6700}.critical{color:#cf222e}</style>\
         </head><body><h1>Plimsoll</h1>\
         <p><a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/probes\">/api/v1/probes</a> · \
         <a href=\"/healthz\">/healthz</a> · <a href=\"/readyz\">/readyz</a></p>\
         <table><tr><th>probe</th><th>kind</th><th>target</th><th>schedule</th><th>last grade</th>\
         <th>why</th><th>p99 ms</th><th>rps</th><th>errors</th><th>last run</th><th>next run</th></tr>",
    );
    for p in shared.probes() {
        let why = p
            .last
            .as_ref()
            .map(|r| r.grade_reason.clone())
            .unwrap_or_default();
        let (grade, p99, rps, errors, started) = match &p.last {
            Some(r) => {
                let s = r.stats.as_ref();
                (
                    r.grade.as_str().to_string(),
                    s.map(|s| format!("{:.1}", s.latency_ms.p99))
                        .unwrap_or_default(),
                    s.map(|s| format!("{:.1}", s.rps)).unwrap_or_default(),
                    s.map(|s| s.errors.to_string()).unwrap_or_default(),
                    r.started_at.clone(),
                )
            }
            None if p.running => (
                "running".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
            None => (
                "not run yet".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.name),
            escape(&p.kind),
            escape(p.target.as_deref().unwrap_or("")),
            escape(&p.schedule),
            escape(&grade),
            escape(&grade),
            escape(&why),
            p99,
            rps,
            errors,
            escape(&started),
            escape(p.next_run.as_deref().unwrap_or("never")),
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_scheme_bearer_in_lower_case_is_accepted() {
        assert_eq!(bearer_token("bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer_token("BEARER s3cret"), Some("s3cret"));
        assert_eq!(bearer_token("Bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer_token("Basic s3cret"), None);
        assert_eq!(bearer_token("Bearers3cret"), None);
    }
}
