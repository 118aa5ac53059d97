//! The race's wire work: connections kept between rounds, requests prepared before the
//! release, and the release itself (every claim future polled from one task, so the sends
//! leave together). It judges nothing: answers go back to the round as they came.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use http::Request;

use crate::engine::h1::Response1;
use crate::engine::http::{Conn, Endpoint, ReqBody};
use crate::engine::step::Scratch;
use crate::engine::{ErrorKind, PreparedStep, RequestError};

/// A request ready to write: serialized for HTTP/1.1, built for HTTP/2.
pub(super) enum Outgoing {
    H1 { bytes: Vec<u8>, head: bool },
    H2(Box<Request<ReqBody>>),
}

pub(super) fn prepare(
    step: &PreparedStep,
    h2: bool,
    values: &[String],
    scratch: &mut Scratch,
) -> Result<Outgoing, RequestError> {
    if h2 {
        return step
            .build(true, values, scratch)
            .map(|r| Outgoing::H2(Box::new(r)));
    }
    let mut out = Vec::new();
    let bytes = step.h1_bytes(values, scratch, &mut out)?.to_vec();
    Ok(Outgoing::H1 {
        bytes,
        head: step.is_head,
    })
}

pub(super) async fn exchange(
    conn: &mut Conn,
    req: Outgoing,
    max_body: u64,
    body: &mut Vec<u8>,
) -> Result<Response1, RequestError> {
    match req {
        Outgoing::H1 { bytes, head } => {
            conn.exchange_h1(&bytes, head, max_body, Some(body), None)
                .await
        }
        Outgoing::H2(r) => conn.exchange_h2(*r, max_body, Some(body), None).await,
    }
}

pub(super) fn timed_out(timeout: Duration) -> RequestError {
    RequestError::new(
        ErrorKind::Timeout,
        format!(
            "no complete answer within {}",
            humantime::format_duration(timeout)
        ),
    )
}

/// A kept connection if it can still carry a request, else a new one, by `deadline`.
pub(super) async fn ready_conn(
    slot: Option<Conn>,
    endpoint: &Endpoint,
    addrs: &[SocketAddr],
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<Conn, RequestError> {
    if let Some(mut c) = slot {
        if c.is_usable() {
            return Ok(c);
        }
    }
    match tokio::time::timeout_at(deadline, endpoint.connect(addrs)).await {
        Ok(r) => r,
        Err(_) => Err(RequestError::new(
            ErrorKind::Connect,
            format!("connect: {}", timed_out(timeout).message),
        )),
    }
}

/// One claim after the release.
pub(super) struct ClaimDone {
    pub(super) claimant: usize,
    pub(super) sent: Instant,
    pub(super) answered: Instant,
    pub(super) result: Result<(Response1, Vec<u8>), RequestError>,
    pub(super) conn: Option<Conn>,
}

pub(super) async fn claim_once(
    claimant: usize,
    mut conn: Conn,
    req: Outgoing,
    max_body: u64,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> ClaimDone {
    let sent = Instant::now();
    let mut body = Vec::new();
    let result = match tokio::time::timeout_at(
        deadline,
        exchange(&mut conn, req, max_body, &mut body),
    )
    .await
    {
        Ok(Ok(r)) => Ok((r, body)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(timed_out(timeout)),
    };
    // A connection is kept for the next round only after a clean, reusable exchange; one cut
    // off by the timeout is in an unknown state.
    let keep = matches!(&result, Ok((r, _)) if r.reusable);
    ClaimDone {
        claimant,
        sent,
        answered: Instant::now(),
        result,
        conn: keep.then_some(conn),
    }
}

/// Polls every future from the calling task until all are done, in order on each wake-up:
/// the first pass starts them one right after the other, which is what releases the claims
/// together. (O(n²) polls at worst, for n ≤ 100.)
pub(super) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
