//! Reading other processes' side channels: a minimal blocking HTTP GET (the guardrails'
//! health check, the capacity probe's resource figures, the fault probe's backlog) and the sum
//! of a series in a Prometheus text exposition. Not for load: the engine sends that.

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

/// The sum of the samples of `series` in a Prometheus text exposition, `None` when there is
/// none. A bare name (`rss`) matches every sample of that family whatever its labels; a name
/// with labels (`q{queue="b"}`) matches that label set as written. Comments, look-alike
/// families (`rss_other`), unparsable and non-finite values are skipped; a label value may
/// hold a `}`.
pub fn series_sum(text: &str, series: &str) -> Option<f64> {
    let (name, want_labels) = match series.split_once('{') {
        Some((n, labels)) => (n, Some(labels)),
        None => (series, None),
    };
    let mut sum = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `name 1.5`, `name{a="b"} 1.5` or `name 1.5 1700000000000`; not `name_other 3`.
        let value_part = if let Some(labels) = rest.strip_prefix('{') {
            let Some(end) = labels.rfind('}') else {
                continue;
            };
            if want_labels.is_some_and(|w| w != &labels[..=end]) {
                continue;
            }
            &labels[end + 1..]
        } else if rest.starts_with([' ', '\t']) && want_labels.is_none() {
            rest
        } else {
            continue;
        };
        let Some(v) = value_part
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        if v.is_finite() {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_summed_and_look_alikes_skipped() {
        let text = "# HELP process_cpu_seconds_total CPU.\n\
                    # TYPE process_cpu_seconds_total counter\n\
                    process_cpu_seconds_total 12.5\n\
                    process_cpu_seconds_total_extra 99\n\
                    rss{pod=\"a\"} 100\n\
                    rss{pod=\"b\",x=\"}\"} 50 1700000000000\n\
                    rss_other 7\n";
        assert_eq!(series_sum(text, "process_cpu_seconds_total"), Some(12.5));
        assert_eq!(series_sum(text, "rss"), Some(150.0));
        assert_eq!(series_sum(text, "missing"), None);
    }

    #[test]
    fn a_series_is_read_by_name_or_with_its_labels() {
        let text = "# HELP q depth\nq{queue=\"a\"} 3\nq{queue=\"b\"} 4\nqq 9\nplain 7\nbad NaN\n";
        assert_eq!(series_sum(text, "q"), Some(7.0));
        assert_eq!(series_sum(text, "q{queue=\"b\"}"), Some(4.0));
        assert_eq!(series_sum(text, "q{queue=\"c\"}"), None);
        assert_eq!(series_sum(text, "plain"), Some(7.0));
        assert_eq!(series_sum(text, "plain{x=\"1\"}"), None);
        assert_eq!(series_sum(text, "bad"), None);
        assert_eq!(series_sum(text, "none"), None);
    }
}
