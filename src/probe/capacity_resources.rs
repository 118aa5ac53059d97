//! The target's own resource use during a capacity search (seed 004: what the service spent
//! to serve each rate): CPU and resident memory, read at the start and the end of each step's
//! measured window from the target's Prometheus endpoint or from `/proc` for a local process.
//!
//! A read that fails is reported as the step's `error` and never fails the step or the
//! probe: the latency figures are the measurement, these are context. This module reads and
//! computes; it must not judge steps (the search does) nor print (the summary does).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::scrape::{http_get, series_sum};
use crate::config::ResourcesConfig;
use crate::report::{round3, StepResources};

/// Largest exposition read: a target's `/metrics` is rarely above a few hundred KiB.
const MAX_EXPOSITION: usize = 8 * 1024 * 1024;

/// Where the figures come from.
#[derive(Debug, Clone)]
enum Source {
    Metrics {
        url: String,
        cpu_series: String,
        memory_series: String,
    },
    Pid(u32),
    PidFile(PathBuf),
}

/// Reads one target's CPU and memory; built once per search.
#[derive(Debug, Clone)]
pub struct ResourceReader {
    source: Source,
    timeout: Duration,
}

/// One read: when it was taken and what it found.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSample {
    pub at: Instant,
    /// The CPU-seconds counter (a process's user + system time).
    pub cpu_seconds: Option<f64>,
    pub rss_bytes: Option<u64>,
    /// The process read, in the `/proc` modes (a change between two reads is a restart).
    pub pid: Option<u32>,
}

impl ResourceReader {
    /// The reader of a validated `[probe.capacity.resources]` table.
    pub fn new(c: &ResourcesConfig) -> ResourceReader {
        let source = match (&c.metrics_url, c.pid, &c.pid_file) {
            (Some(url), _, _) => Source::Metrics {
                url: url.clone(),
                cpu_series: c.cpu_series.clone(),
                memory_series: c.memory_series.clone(),
            },
            (None, Some(pid), _) => Source::Pid(pid),
            (None, None, Some(f)) => Source::PidFile(f.clone()),
            // Validation refuses a table without a source; this one reads nothing.
            (None, None, None) => Source::PidFile(PathBuf::new()),
        };
        ResourceReader {
            source,
            timeout: c.timeout.as_duration(),
        }
    }

    /// The source in words, for the result (`resources_source`).
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Metrics { url, .. } => crate::config::redact_url(url),
            Source::Pid(p) => format!("pid {p}"),
            Source::PidFile(f) => format!("pid file {}", f.display()),
        }
    }

    /// Reads the figures now.
    pub fn sample(&self) -> Result<ResourceSample, String> {
        let at = Instant::now();
        match &self.source {
            Source::Metrics {
                url,
                cpu_series,
                memory_series,
            } => {
                let (status, body) = http_get(url, self.timeout, MAX_EXPOSITION)
                    .map_err(|e| format!("{}: {e}", crate::config::redact_url(url)))?;
                if !(200..300).contains(&status) {
                    return Err(format!(
                        "{} answered status {status}",
                        crate::config::redact_url(url)
                    ));
                }
                let text = String::from_utf8_lossy(&body);
                let cpu_seconds = series_sum(&text, cpu_series);
                let rss_bytes = series_sum(&text, memory_series).map(|b| b.max(0.0) as u64);
                if cpu_seconds.is_none() && rss_bytes.is_none() {
                    return Err(format!(
                        "{} has neither {cpu_series} nor {memory_series}",
                        crate::config::redact_url(url)
                    ));
                }
                Ok(ResourceSample {
                    at,
                    cpu_seconds,
                    rss_bytes,
                    pid: None,
                })
            }
            Source::Pid(pid) => read_proc(*pid, at),
            Source::PidFile(f) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| format!("pid file {}: {e}", f.display()))?;
                let pid: u32 = text.trim().parse().map_err(|_| {
                    format!(
                        "pid file {}: {:?} is not a process id",
                        f.display(),
                        text.trim()
                    )
                })?;
                read_proc(pid, at)
            }
        }
    }
}

/// CPU and resident memory of a local process from `/proc/PID/stat` and `/proc/PID/status`.
fn read_proc(pid: u32, at: Instant) -> Result<ResourceSample, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    Ok(ResourceSample {
        at,
        cpu_seconds: Some(
            cpu_ticks(&stat).ok_or_else(|| format!("/proc/{pid}/stat: unexpected layout"))? as f64
                / clock_ticks_per_second(),
        ),
        rss_bytes: vm_rss_bytes(&status),
        pid: Some(pid),
    })
}

/// `utime + stime` of a `/proc/PID/stat` line, in clock ticks. The command name sits in
/// parentheses and may hold spaces or parentheses, so fields are counted after the last `)`:
/// `state` is the first there, `utime` the 12th and `stime` the 13th.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of a `/proc/PID/status` text, in bytes (a kernel thread has none).
fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// A step's figures from the reads at the start and the end of its measured window, and
/// the requests the target answered in it.
pub fn step_figures(
    start: &Result<ResourceSample, String>,
    end: &Result<ResourceSample, String>,
    requests: u64,
) -> StepResources {
    let (a, b) = match (start, end) {
        (Err(e), _) | (_, Err(e)) => {
            return StepResources {
                rss_bytes: end.as_ref().ok().and_then(|b| b.rss_bytes),
                error: Some(e.clone()),
                ..Default::default()
            }
        }
        (Ok(a), Ok(b)) => (a, b),
    };
    let mut out = StepResources {
        rss_bytes: b.rss_bytes,
        ..Default::default()
    };
    if a.pid != b.pid {
        out.error = Some(format!(
            "the process changed during the step (pid {} then {}): no CPU figure",
            a.pid.unwrap_or(0),
            b.pid.unwrap_or(0)
        ));
        return out;
    }
    let window = b.at.duration_since(a.at).as_secs_f64();
    match (a.cpu_seconds, b.cpu_seconds) {
        (Some(c0), Some(c1)) if c1 >= c0 && window > 0.0 => {
            let spent = c1 - c0;
            out.cpu_cores = Some(round3_sig(spent / window));
            if requests > 0 {
                out.cpu_ms_per_request = Some(round3_sig(spent * 1000.0 / requests as f64));
            }
        }
        (Some(_), Some(_)) => {
            out.error = Some("the CPU counter went backwards (a restart?)".into());
        }
        _ => out.error = Some("no CPU counter in the source".into()),
    }
    out
}

/// Rounds to three decimals, or to four significant digits for smaller figures (a quiet
/// target's CPU per request is a few microseconds).
fn round3_sig(x: f64) -> f64 {
    if x.abs() >= 1.0 || x == 0.0 {
        return round3(x);
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_are_counted_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(
            vm_rss_bytes("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(vm_rss_bytes("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn a_step_spends_the_counter_difference_over_its_window() {
        let t0 = Instant::now();
        let s = |secs: f64, cpu: f64, pid: u32| {
            Ok(ResourceSample {
                at: t0 + Duration::from_secs_f64(secs),
                cpu_seconds: Some(cpu),
                rss_bytes: Some(1 << 20),
                pid: Some(pid),
            })
        };
        let f = step_figures(&s(0.0, 10.0, 1), &s(2.0, 11.0, 1), 500);
        assert_eq!(f.cpu_cores, Some(0.5));
        assert_eq!(f.cpu_ms_per_request, Some(2.0));
        assert_eq!(f.rss_bytes, Some(1 << 20));
        assert_eq!(f.error, None);
        let restarted = step_figures(&s(0.0, 10.0, 1), &s(2.0, 0.5, 2), 500);
        assert!(restarted.cpu_cores.is_none() && restarted.error.is_some());
        let failed = step_figures(&Err("refused".into()), &s(2.0, 11.0, 1), 500);
        assert_eq!(failed.error.as_deref(), Some("refused"));
        assert_eq!(round3_sig(0.000123456), 0.0001235);
    }

    #[test]
    fn this_process_can_be_read_by_pid() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let s = read_proc(std::process::id(), Instant::now()).expect("own /proc");
        assert!(s.rss_bytes.is_some_and(|r| r > 0));
        assert!(s.cpu_seconds.is_some_and(|c| c >= 0.0));
    }
}
