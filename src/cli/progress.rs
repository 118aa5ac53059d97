//! The terminal side of a run: Ctrl-C and SIGTERM handling, the notice before a heavy run,
//! colour only on a terminal, and the live progress line on stderr (one line that fits the
//! terminal's width and names the phase). It draws; it never measures or grades.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, LoadConfig, ProbeConfig, ProbeSpec};
use crate::engine::Progress;
use crate::probe::{run_probe, RunContext};
use crate::report::ProbeResult;
pub use crate::telemetry::Telemetry;

/// A flag set by Ctrl-C or SIGTERM: the running probe stops and reports what it measured so
/// far (within a second: the stop contract), and its result is written as usual.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    use tokio::signal::unix::{signal, SignalKind};
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return stop;
    };
    // Installed here, before the caller starts any probe, so that a signal sent right after
    // start is already ours (the default action would end the process and lose the results).
    let (int, term) = {
        let _in_rt = rt.enter();
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    let (Ok(mut int), Ok(mut term)) = (int, term) else {
        return stop;
    };
    let _ = std::thread::Builder::new()
        .name("plimsoll-signal".into())
        .spawn(move || {
            rt.block_on(async {
                let why = tokio::select! {
                    r = int.recv() => r.map(|()| "interrupted"),
                    r = term.recv() => r.map(|()| "SIGTERM"),
                };
                if let Some(why) = why {
                    eprintln!("\n{why}: stopping, keeping what was measured");
                    flag.store(true, Ordering::Relaxed);
                }
            });
        });
    stop
}

/// Concurrent unpaced users above which a run started by hand is announced before it starts.
pub const DEFAULT_USERS_CEILING: u32 = 50;
/// Planned arrivals per second above which a run started by hand is announced.
pub const DEFAULT_RATE_CEILING: f64 = 200.0;

/// Whether to colour output going to `stream`: a terminal, and `NO_COLOR` not set.
pub fn colour_on(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// What a load probe is about to do when it exceeds the default ceilings (unpaced users or a
/// planned rate), said before it starts; the run still goes ahead as configured.
pub fn ceiling_notice(probe: &ProbeConfig) -> Option<String> {
    let ProbeSpec::Load(load) = &probe.spec else {
        return None;
    };
    let users = load
        .concurrency
        .or(load.level.map(|l| l.concurrency()))
        .unwrap_or(0);
    if users > DEFAULT_USERS_CEILING {
        let paced = if load.think.is_zero() {
            "each sending its next request as soon as the last is answered"
        } else {
            "with think time between iterations"
        };
        return Some(format!(
            "note: probe {:?} runs {users} concurrent users ({paced}), above the default \
             ceiling of {DEFAULT_USERS_CEILING}; Ctrl-C stops it and keeps what it measured",
            probe.name
        ));
    }
    let peak = load
        .phases
        .iter()
        .filter_map(|p| p.rate.map(|r| r.max(p.ramp_to.unwrap_or(r))))
        .fold(0.0, f64::max);
    (peak > DEFAULT_RATE_CEILING).then(|| {
        format!(
            "note: probe {:?} plans up to {peak} requests/s, above the default ceiling of \
             {DEFAULT_RATE_CEILING}/s; Ctrl-C stops it and keeps what it measured",
            probe.name
        )
    })
}

/// The phase a load is in after `elapsed`: the open model's phase name, or the closed
/// model's `ramp-up` / `steady`.
fn phase_at(load: &LoadConfig, elapsed: Duration) -> Option<String> {
    if load.phases.is_empty() {
        let ramp = load.ramp_up.as_duration();
        return Some(if elapsed < ramp { "ramp-up" } else { "steady" }.to_string());
    }
    let mut end = Duration::ZERO;
    for (i, p) in load.phases.iter().enumerate() {
        end += p.duration.map(|d| d.as_duration()).unwrap_or_default();
        if elapsed < end || i + 1 == load.phases.len() {
            return Some(p.name.clone().unwrap_or_else(|| format!("phase-{i}")));
        }
    }
    None
}

/// Columns of the terminal on stderr (`COLUMNS` when the terminal does not say), 80 if
/// neither knows.
fn terminal_width() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: TIOCGWINSZ only writes a winsize into the struct we own.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
        if ok && ws.ws_col > 0 {
            return usize::from(ws.ws_col);
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|c| *c > 0)
        .unwrap_or(80)
}

/// Runs one probe, drawing a progress line on stderr when it is a terminal, lets `finish`
/// complete the result (the baseline's judgement), and hands it to OTLP when `telemetry`
/// exports (the caller flushes it before exiting).
pub fn run_with_progress(
    cfg: &Config,
    probe: &ProbeConfig,
    stop: &Arc<AtomicBool>,
    telemetry: &Telemetry,
    finish: impl FnOnce(&mut ProbeResult),
) -> ProbeResult {
    let trace = telemetry.begin_run();
    let mut ctx = RunContext {
        stop: stop.clone(),
        on_start: None,
        trace,
        guard: None,
    };
    let done = Arc::new(AtomicBool::new(false));
    let mut drawer = None;
    if std::io::stderr().is_terminal() {
        let (tx, rx) = std::sync::mpsc::channel::<(Arc<Progress>, Option<Duration>)>();
        let tx = std::sync::Mutex::new(tx);
        ctx.on_start = Some(Arc::new(move |p, d| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send((p, d));
            }
        }));
        let (done2, name) = (done.clone(), probe.name.clone());
        let load = match &probe.spec {
            ProbeSpec::Load(l) => Some(l.clone()),
            _ => None,
        };
        drawer = Some(std::thread::spawn(move || {
            let Ok((progress, expected)) = rx.recv() else {
                return;
            };
            let start = Instant::now();
            while !done2.load(Ordering::Relaxed) {
                let elapsed = start.elapsed();
                let phase = load.as_ref().and_then(|l| phase_at(l, elapsed));
                let line = progress_line(&name, phase.as_deref(), &progress, elapsed, expected);
                eprint!(
                    "\r\x1b[2K{}",
                    fit(&line, terminal_width().saturating_sub(1))
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            eprint!("\r\x1b[2K");
        }));
    }
    let mut result = run_probe(cfg, probe, &ctx);
    done.store(true, Ordering::Relaxed);
    drop(ctx);
    if let Some(d) = drawer {
        let _ = d.join();
    }
    finish(&mut result);
    telemetry.export_run(probe, &result, trace.as_ref());
    result
}

/// Cuts a line to `width` characters so it never wraps (a wrapped line scrolls on `\r`).
fn fit(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The progress line: most important first, so cutting it to the width loses the least.
fn progress_line(
    name: &str,
    phase: Option<&str>,
    p: &Progress,
    elapsed: Duration,
    expected: Option<Duration>,
) -> String {
    let (req, err) = p.totals();
    let secs = elapsed.as_secs_f64();
    let rps = if secs > 0.0 { req as f64 / secs } else { 0.0 };
    let time = match expected {
        Some(e) if !e.is_zero() => format!("{secs:.1}s/{:.0}s", e.as_secs_f64()),
        _ => format!("{secs:.1}s"),
    };
    let name = crate::report::terminal::escape_name(name);
    let phase = phase.map(|p| format!(" [{p}]")).unwrap_or_default();
    let mut line = format!("{name}{phase} {time}  {req} req  {err} err  {rps:.0}/s");
    if let Some(e) = expected.filter(|e| !e.is_zero()) {
        let frac = (secs / e.as_secs_f64()).min(1.0);
        let filled = (frac * 20.0) as usize;
        line.push_str(&format!(
            "  [{}{}]",
            "=".repeat(filled),
            " ".repeat(20 - filled)
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_fits_the_width_and_names_the_phase() {
        let p = Progress::new(1);
        let line = progress_line(
            "webhook-light",
            Some("warm-up"),
            &p,
            Duration::from_secs(3),
            Some(Duration::from_secs(10)),
        );
        assert!(
            line.starts_with("webhook-light [warm-up] 3.0s/10s"),
            "{line}"
        );
        let cut = fit(&line, 30);
        assert_eq!(cut.chars().count(), 30);
        assert!(cut.ends_with('…'));
        assert_eq!(fit("short", 30), "short");
    }
}
