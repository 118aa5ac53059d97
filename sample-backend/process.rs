//! `GET /metrics`: the backend's own resource use in the Prometheus text format, so the
//! capacity probe's tests and the demo have a target that reports what it spent.
//!
//! Two families, named as the Prometheus client libraries name them:
//! `process_cpu_seconds_total` (user + system CPU time) and `process_resident_memory_bytes`,
//! both read from this process's `/proc/self/stat` and `/proc/self/status` at each scrape.
//! On a system without `/proc` the families are left out rather than invented. This module
//! must not know anything about Plimsoll's probes.

use std::fmt::Write as _;

use hyper::{Response, StatusCode};

use crate::reply::{self, ReplyBody};

/// The route's path.
pub const PATH: &str = "/metrics";

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers `/metrics`: the process's own families, then `more` (other parts' series).
pub fn respond(more: &str) -> Response<ReplyBody> {
    let mut body = String::new();
    if let Some(cpu) = cpu_seconds() {
        let _ = write!(
            body,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total {cpu}\n"
        );
    }
    if let Some(rss) = resident_bytes() {
        let _ = write!(
            body,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\n\
             process_resident_memory_bytes {rss}\n"
        );
    }
    body.push_str(more);
    reply::with_type(StatusCode::OK, TEXT_FORMAT, ReplyBody::whole(body))
}

/// User + system CPU time of this process, in seconds (clock ticks of `/proc/self/stat`).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name is in parentheses and may hold spaces: fields are counted after it.
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) as f64 / ticks)
}

/// Resident set size of this process in bytes (`VmRSS` of `/proc/self/status`).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_reads_its_own_figures() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        // Burn a little CPU so the counter cannot be read as zero by accident of rounding.
        let began = std::time::Instant::now();
        let mut x = 0u64;
        while began.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_seconds().is_some_and(|c| c > 0.0));
        assert!(resident_bytes().is_some_and(|r| r > 1024 * 1024));
    }
}
