//! Response bodies and the small response builders every route shares.
//!
//! One concrete body type serves every route, so the service never boxes a body per request:
//! most answers are one prebuilt `Bytes` frame, and `/bytes` streams a repeated pattern chunk
//! whose allocation is shared by every response. Nothing here looks at requests.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// Content type of every JSON answer.
pub const JSON: &str = "application/json";
/// Content type of the TwiML answer to a webhook.
pub const XML: &str = "text/xml";
/// Content type of the `/bytes` stream.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The body of every response the sample backend sends.
#[derive(Debug)]
pub enum ReplyBody {
    /// A body that is already in memory; `None` once it has been sent (or for an empty body).
    Whole(Option<Bytes>),
    /// `remaining` bytes cut from repetitions of `chunk`, one chunk per frame, so a 200 MB
    /// answer never needs 200 MB of memory and hyper's write backpressure paces it.
    Pattern { chunk: Bytes, remaining: u64 },
}

impl ReplyBody {
    /// A body of exactly these bytes.
    pub fn whole(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Self::Whole(None)
        } else {
            Self::Whole(Some(bytes))
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::Whole(None)
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        // Both variants are plain data (no futures inside), so `ReplyBody` is `Unpin` and a frame
        // is always ready: the body never has to wait for anything but the socket.
        match self.get_mut() {
            Self::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Pattern { chunk, remaining } => {
                if *remaining == 0 || chunk.is_empty() {
                    return Poll::Ready(None);
                }
                let take = usize::try_from(*remaining).map_or(chunk.len(), |r| r.min(chunk.len()));
                *remaining -= take as u64;
                // `slice` shares the chunk's allocation: no copy, only a reference count.
                Poll::Ready(Some(Ok(Frame::data(chunk.slice(..take)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Whole(bytes) => bytes.is_none(),
            Self::Pattern { chunk, remaining } => *remaining == 0 || chunk.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        // An exact hint lets hyper send `Content-Length` instead of chunked encoding, which is
        // what a client enforcing a body-size limit would look at first.
        match self {
            Self::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Self::Pattern { chunk, remaining } if chunk.is_empty() => SizeHint::with_exact(0),
            Self::Pattern { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

/// A response with a status, a content type and a body.
pub fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: ReplyBody,
) -> Response<ReplyBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON response from bytes that are already JSON (prebuilt at startup).
pub fn json_bytes(status: StatusCode, body: Bytes) -> Response<ReplyBody> {
    with_type(status, JSON, ReplyBody::whole(body))
}

/// A JSON response from any serializable value.
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<ReplyBody> {
    match serde_json::to_vec(value) {
        Ok(body) => json_bytes(status, Bytes::from(body)),
        // Serializing our own plain structs cannot fail; if it somehow did, say so rather than
        // send a half-written document.
        Err(_) => json_bytes(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(br#"{"error":"could not encode the response"}"#),
        ),
    }
}

/// `{"error": message}` with the given status.
pub fn error(status: StatusCode, message: &str) -> Response<ReplyBody> {
    json(status, &serde_json::json!({ "error": message }))
}

/// 404 for a path the backend does not serve.
pub fn not_found() -> Response<ReplyBody> {
    error(StatusCode::NOT_FOUND, "not found")
}

/// 405 for a known path asked with the wrong method; `allow` lists the right ones.
pub fn method_not_allowed(allow: &'static str) -> Response<ReplyBody> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// The pattern body must add up to exactly the requested length, including a last partial
    /// chunk, and must say so up front.
    #[tokio::test]
    async fn pattern_body_has_exact_length() {
        let chunk = Bytes::from(vec![b'x'; 1000]);
        let body = ReplyBody::Pattern {
            chunk,
            remaining: 2500,
        };
        assert_eq!(body.size_hint().exact(), Some(2500));
        let collected = body.collect().await.map(|c| c.to_bytes());
        assert_eq!(collected.map(|b| b.len()).ok(), Some(2500));
    }

    #[tokio::test]
    async fn empty_whole_body_ends_at_once() {
        let body = ReplyBody::whole(Bytes::new());
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
