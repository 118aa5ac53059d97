//! A minimal blocking HTTP GET for the probes' side channels (the guardrails' health check,
//! the capacity probe's resource scrape). Not for load: the engine sends that.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// One plain HTTP GET within `timeout`: the status, and up to `max_body` bytes of the body
/// (none when `max_body` is 0, and then only the status line is waited for). Asked as
/// HTTP/1.0 so that the answer is never chunked: the body is whatever comes before the close.
/// Shared by the health check and the capacity probe's resource reader; not for load.
pub fn http_get(url: &str, timeout: Duration, max_body: usize) -> Result<(u16, Vec<u8>), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| "not an http:// URL".to_string())?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr_text = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let deadline = Instant::now() + timeout;
    let addr = addr_text
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    s.set_read_timeout(Some(left)).ok();
    s.set_write_timeout(Some(left)).ok();
    let req =
        format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: plimsoll-guard\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if max_body == 0 && buf.len() >= 12 {
            break None;
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(i + 4);
        }
        if Instant::now() >= deadline || buf.len() > 64 * 1024 {
            return Err(format!("no answer within {timeout:?}"));
        }
        match s.read(&mut chunk) {
            Ok(0) if buf.len() >= 12 => break None,
            Ok(0) => return Err("the connection closed before an answer".into()),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) => return Err(format!("no answer within {timeout:?}: {e}")),
        }
    };
    let text = String::from_utf8_lossy(&buf[..buf.len().min(64)]);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "not an HTTP answer".to_string())?;
    let Some(head_end) = head_end.filter(|_| max_body > 0) else {
        return Ok((status, Vec::new()));
    };
    let mut body = buf.split_off(head_end);
    loop {
        if body.len() > max_body {
            return Err(format!("the answer is larger than {max_body} bytes"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("the answer did not end within {timeout:?}"));
        }
        s.set_read_timeout(Some(left)).ok();
        match s.read(&mut chunk) {
            Ok(0) => return Ok((status, body)),
            Ok(k) => body.extend_from_slice(&chunk[..k]),
            Err(e) => return Err(format!("the answer did not end within {timeout:?}: {e}")),
        }
    }
}
