//! The terminal side of a run: Ctrl-C handling and the live progress line on stderr.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, ProbeConfig};
use crate::engine::Progress;
use crate::probe::{run_probe, RunContext};
use crate::report::ProbeResult;

/// A flag set by Ctrl-C: the running probe stops and reports what it measured so far.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = std::thread::Builder::new()
        .name("plimsoll-signal".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("\ninterrupted: finishing requests in flight");
                    flag.store(true, Ordering::Relaxed);
                }
            });
        });
    stop
}

/// Runs one probe, drawing a progress line on stderr when it is a terminal.
pub fn run_with_progress(cfg: &Config, probe: &ProbeConfig, stop: &Arc<AtomicBool>) -> ProbeResult {
    let mut ctx = RunContext {
        stop: stop.clone(),
        on_start: None,
        trace: None,
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
        drawer = Some(std::thread::spawn(move || {
            let Ok((progress, expected)) = rx.recv() else {
                return;
            };
            let start = Instant::now();
            while !done2.load(Ordering::Relaxed) {
                draw_progress(&name, &progress, start.elapsed(), expected);
                std::thread::sleep(Duration::from_millis(200));
            }
            eprint!("\r\x1b[2K");
        }));
    }
    let result = run_probe(cfg, probe, &ctx);
    done.store(true, Ordering::Relaxed);
    drop(ctx);
    if let Some(d) = drawer {
        let _ = d.join();
    }
    result
}

fn draw_progress(name: &str, p: &Progress, elapsed: Duration, expected: Option<Duration>) {
    let (req, err) = p.totals();
    let secs = elapsed.as_secs_f64();
    let rps = if secs > 0.0 { req as f64 / secs } else { 0.0 };
    let bar = match expected {
        Some(e) if !e.is_zero() => {
            let frac = (secs / e.as_secs_f64()).min(1.0);
            let filled = (frac * 30.0) as usize;
            format!(
                "[{}{}] {:>5.1}s/{:.0}s",
                "=".repeat(filled),
                " ".repeat(30 - filled),
                secs,
                e.as_secs_f64()
            )
        }
        _ => format!("{secs:>6.1}s"),
    };
    eprint!("\r\x1b[2K{name} {bar}  {req} req  {err} err  {rps:.0} rps");
}
