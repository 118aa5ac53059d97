//! The daemon (`plimsoll run`): the scheduler, the HTTP endpoints, signals and the service
//! lifecycle, on one small current-thread runtime. Probe runs themselves go on blocking
//! threads (the load engine brings its own runtimes), so nothing here waits on a target.
//!
//! There is one shutdown path: SIGTERM or SIGINT → stop scheduling → running probes get the
//! grace period → they are stopped and return what they measured within a second (the stop
//! contract, `scheduler::STOP_BOUND`) → results are recorded → exit 0. A second signal ends
//! the process at once. A probe that fails is data; nothing a target does can stop the daemon.

mod guard;
mod http;
pub mod notify;
pub mod schedule;
mod scheduler;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::report::ProbeResult;
use crate::telemetry::Telemetry;
use scheduler::Control;

/// Why the daemon could not start. The CLI maps every variant to exit code 4.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("daemon.listen: {0:?} is not an address")]
    BadListen(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("baseline.store: {0}")]
    Store(String),
}

/// What the endpoints read and the scheduler writes. Owned by an `Arc` that the scheduler
/// task, the HTTP server and the signal loop each hold until the process exits.
pub struct Shared {
    pub telemetry: Telemetry,
    /// One entry per configured probe, in configuration order.
    board: Mutex<Vec<ProbeStatus>>,
    /// Unix milliseconds of the scheduler loop's last pass.
    heartbeat_ms: AtomicU64,
    /// The configuration is loaded and the listeners are bound; false again once stopping.
    ready: AtomicBool,
    /// Bearer token the listing endpoints require.
    token: Mutex<Option<String>>,
    /// `/metrics` encodings reused while the series are unchanged.
    metrics_cache: http::MetricsCache,
    /// The guardrails' live state (pause flag, blackouts); replaced on reload.
    guard: Mutex<Arc<crate::probe::guard::Guard>>,
    /// The baseline store, opened at start and kept until the process exits; `None` when
    /// `[baseline]` is disabled or its default file could not be opened.
    store: Option<Arc<crate::baseline::Store>>,
    /// What `/readyz` says of the store: its location and the last problem, if any.
    store_health: Mutex<StoreHealth>,
}

/// The store as `/readyz` reports it.
#[derive(Debug, Clone, Default)]
pub struct StoreHealth {
    /// The store's location (no password), or why there is none.
    pub location: String,
    /// The last failed operation, cleared by the next one that works.
    pub problem: Option<String>,
    /// Runs waiting in the spool.
    pub spooled: usize,
}

/// A probe as `/api/v1/probes` and the status page show it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeStatus {
    pub name: String,
    pub kind: String,
    pub target: Option<String>,
    pub schedule: String,
    /// RFC 3339 time of the next planned start (tick plus jitter).
    pub next_run: Option<String>,
    pub running: bool,
    pub runs: u64,
    pub skipped: u64,
    /// How late the last run started behind its planned time.
    pub last_start_delay_ms: Option<f64>,
    /// The last run's result document.
    pub last: Option<ProbeResult>,
}

impl Shared {
    fn new(config: &Config, store: Option<Arc<crate::baseline::Store>>) -> Self {
        let location = match &store {
            Some(s) => s.url().to_string(),
            None if config.baseline.enabled => "none (the default file could not be opened)".into(),
            None => "none ([baseline] is disabled)".into(),
        };
        Shared {
            store,
            store_health: Mutex::new(StoreHealth {
                location,
                ..Default::default()
            }),
            telemetry: Telemetry::with_otlp(&config.otlp),
            board: Mutex::new(Vec::new()),
            heartbeat_ms: AtomicU64::new(unix_ms()),
            ready: AtomicBool::new(false),
            token: Mutex::new(token_of(config)),
            metrics_cache: http::MetricsCache::default(),
            guard: Mutex::new(Arc::new(crate::probe::guard::Guard::new(
                &config.guardrails,
            ))),
        }
    }

    /// The guardrails' current state.
    pub fn guard(&self) -> Arc<crate::probe::guard::Guard> {
        self.guard.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// New guardrail settings (reload); the pause flag carries over.
    fn reconfigure_guard(&self, cfg: &crate::config::GuardrailsConfig) {
        let mut g = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        let next = Arc::new(g.reconfigured(cfg));
        *g = next;
    }

    /// The baseline store, when there is one.
    pub fn store(&self) -> Option<Arc<crate::baseline::Store>> {
        self.store.clone()
    }

    /// The store's state for `/readyz`.
    pub fn store_health(&self) -> StoreHealth {
        self.store_health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Notes the outcome of a store operation and the spool's size (gauge included).
    fn store_checked(&self, problem: Option<String>) {
        let spooled = self.store.as_ref().map_or(0, |s| s.spooled());
        self.telemetry.record_spooled(spooled);
        let mut h = self.store_health.lock().unwrap_or_else(|e| e.into_inner());
        h.problem = problem;
        h.spooled = spooled;
    }

    fn beat(&self) {
        self.heartbeat_ms.store(unix_ms(), Ordering::Relaxed);
    }

    /// Time since the scheduler loop last went round.
    pub fn heartbeat_age(&self) -> Duration {
        Duration::from_millis(unix_ms().saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed)))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn probes(&self) -> Vec<ProbeStatus> {
        self.board.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn token(&self) -> Option<String> {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, probe: &str, f: impl FnOnce(&mut ProbeStatus)) {
        let mut b = self.board.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = b.iter_mut().find(|s| s.name == probe) {
            f(s);
        }
    }

    /// Installs a new probe list, keeping the history of probes that stay.
    fn replace_probes(&self, mut new: Vec<ProbeStatus>) {
        let mut b = self.board.lock().unwrap_or_else(|e| e.into_inner());
        for n in new.iter_mut() {
            if let Some(old) = b.iter_mut().find(|o| o.name == n.name) {
                n.runs = old.runs;
                n.skipped = old.skipped;
                n.running = old.running;
                n.last_start_delay_ms = old.last_start_delay_ms;
                n.last = old.last.take();
            }
        }
        *b = new;
    }
}

fn token_of(config: &Config) -> Option<String> {
    config
        .daemon
        .bearer_token
        .as_ref()
        .map(|t| t.expose().to_string())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sends daemon logs to stderr; `PLIMSOLL_LOG` picks the level (error, warn, info, debug). The
/// OpenTelemetry libraries' own lines pass once a minute per message ([`SdkLogFilter`]).
///
/// [`SdkLogFilter`]: crate::telemetry::SdkLogFilter
pub fn init_logging() {
    let level = match std::env::var("PLIMSOLL_LOG").as_deref() {
        Ok("error") => tracing::Level::ERROR,
        Ok("warn") => tracing::Level::WARN,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    // The OpenTelemetry libraries' own lines go through a gate (each message once a minute),
    // so a collector that is down cannot fill the log.
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(move || LogLine { ansi })
        .with_ansi(ansi)
        .with_filter(tracing_subscriber::filter::LevelFilter::from_level(level))
        .with_filter(crate::telemetry::SdkLogFilter);
    let _ = tracing_subscriber::registry().with(lines).try_init();
}

/// stderr for log lines: a control character a name or a target's answer brought into a line
/// (a newline that would forge a line, a terminal escape) is written escaped. The formatter
/// writes one whole line per call; only its final line feed, and with `ansi` the formatter's
/// own colour sequences (`ESC [ digits m`), stay raw.
struct LogLine {
    ansi: bool,
}

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (&*text, ""),
        };
        let mut out = String::with_capacity(body.len() + 1);
        let mut rest = body;
        while let Some(c) = rest.chars().next() {
            if self.ansi && c == '\u{1b}' {
                if let Some(sgr) = sgr_prefix(rest) {
                    out.push_str(sgr);
                    rest = &rest[sgr.len()..];
                    continue;
                }
            }
            out.push_str(&crate::report::terminal::escape_name(&rest[..c.len_utf8()]));
            rest = &rest[c.len_utf8()..];
        }
        out.push_str(end);
        std::io::stderr().write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A colour sequence (`ESC [ 0-9; m`) at the start of `s`.
fn sgr_prefix(s: &str) -> Option<&str> {
    let params = s.strip_prefix("\u{1b}[")?;
    let n = params
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b';')
        .count();
    params[n..].starts_with('m').then(|| &s[..2 + n + 1])
}

/// How the daemon was started.
pub struct Options {
    /// The file to read again on SIGHUP; `None` (the demo) means there is nothing to reload.
    pub config_path: Option<PathBuf>,
    /// Replaces `daemon.listen`.
    pub listen: Option<SocketAddr>,
    /// Called once the endpoints are bound, with their address (the demo prints its URLs).
    pub on_ready: Option<Box<dyn FnOnce(SocketAddr) + Send>>,
}

/// Runs the daemon until SIGTERM or SIGINT; an error means it could not start.
pub fn run(config: Config, opts: Options) -> Result<(), DaemonError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let r = rt.block_on(serve(config, opts));
    // Dropping a runtime joins its blocking threads, where probe runs live: a run that broke
    // the stop contract would hold the process up. Everything worth keeping is written by now.
    rt.shutdown_background();
    r
}

/// A second SIGTERM/SIGINT while stopping means "now": the process ends at once, without
/// waiting for runs, OTLP or any destructor (an OTLP provider's drop may wait on a collector).
fn exit_now(why: &str) -> ! {
    tracing::warn!("second signal: exiting now{why}");
    use std::io::Write;
    let _ = std::io::stderr().flush();
    let _ = std::io::stdout().flush();
    std::process::exit(0)
}

async fn serve(config: Config, mut opts: Options) -> Result<(), DaemonError> {
    let addr: SocketAddr = match opts.listen {
        Some(a) => a,
        // Validation has checked the address.
        None => match config.daemon.listen.parse() {
            Ok(a) => a,
            Err(_) => return Err(DaemonError::BadListen(config.daemon.listen.clone())),
        },
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let store = open_store(&config).await?;
    let shared = Arc::new(Shared::new(&config, store));
    if shared.store.is_some() {
        tokio::spawn(tend_store(shared.clone()));
    }
    let listen_text = config.daemon.listen.clone();
    let otlp_running = config.otlp.clone();
    let (control_tx, control_rx) = mpsc::channel::<Control>(4);
    let scheduler = tokio::spawn(scheduler::start(config, shared.clone(), control_rx));
    let std_listener = listener.into_std().map_err(DaemonError::Runtime)?;
    http::start(std_listener, shared.clone()).map_err(DaemonError::Runtime)?;
    shared.ready.store(true, Ordering::Relaxed);
    tracing::info!("listening on http://{bound}");
    if !bound.ip().is_loopback() && shared.token().is_none() {
        tracing::warn!(
            "listening on {bound}, beyond this machine, without daemon.bearer_token: anyone who can reach it reads /metrics, /api/v1/probes and the status page"
        );
    }
    notify::notify("READY=1");
    if let Some(f) = opts.on_ready.take() {
        f(bound);
    }

    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => {
                let Some(path) = opts.config_path.clone() else {
                    tracing::warn!("SIGHUP: no configuration file to reload");
                    continue;
                };
                notify::notify("RELOADING=1");
                match tokio::task::spawn_blocking(move || crate::config::load_file(&path)).await {
                    Ok(Ok(new)) => {
                        if new.daemon.listen != listen_text {
                            tracing::warn!("daemon.listen changed; the new address takes effect after a restart");
                        }
                        if new.otlp != otlp_running {
                            tracing::warn!("[otlp] changed; the new settings take effect after a restart");
                        }
                        *shared.token.lock().unwrap_or_else(|e| e.into_inner()) = token_of(&new);
                        let _ = control_tx.send(Control::Reload(Box::new(new))).await;
                    }
                    Ok(Err(errors)) => {
                        tracing::error!("SIGHUP: the new configuration is invalid; keeping the running one");
                        for e in &errors.0 {
                            tracing::error!("  {e}");
                        }
                    }
                    Err(e) => tracing::error!("SIGHUP: reload failed: {e}"),
                }
                notify::notify("READY=1");
            }
            _ = scheduler_died(&scheduler) => {
                tracing::error!("the scheduler stopped unexpectedly");
                break;
            }
        }
    }
    shared.ready.store(false, Ordering::Relaxed);
    notify::notify("STOPPING=1");
    let _ = control_tx.send(Control::Shutdown).await;
    let mut scheduler = scheduler;
    // A second SIGTERM/SIGINT while draining means "now": stop waiting for the grace period.
    tokio::select! {
        _ = &mut scheduler => {}
        _ = term.recv() => exit_now(", without waiting for running probes"),
        _ = int.recv() => exit_now(", without waiting for running probes"),
    }
    // Last: what the drained runs produced goes out too. Bounded by `otlp.flush_timeout`, and
    // on a blocking thread so that a second signal still ends the wait at once.
    let flusher = shared.clone();
    let mut flush = tokio::task::spawn_blocking(move || flusher.telemetry.shutdown_otlp());
    tokio::select! {
        _ = &mut flush => {}
        _ = term.recv() => exit_now(", without flushing OTLP"),
        _ = int.recv() => exit_now(", without flushing OTLP"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Opens the baseline store at start. A store named in `[baseline].store` that cannot be
/// opened stops the start (exit 4); the default file only costs the judgement, with an error
/// in the log, so that a daemon without a writable state directory still probes.
async fn open_store(config: &Config) -> Result<Option<Arc<crate::baseline::Store>>, DaemonError> {
    let cfg = &config.baseline;
    if !cfg.enabled {
        return Ok(None);
    }
    let bound = crate::baseline::open_bound(cfg);
    let err = match tokio::time::timeout(bound, crate::baseline::open_store(cfg)).await {
        Ok(Ok(store)) => {
            tracing::info!(store = %store.url(), spooled = store.spooled(), "baseline store open");
            return Ok(Some(Arc::new(store)));
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!(
            "{}: no answer within {bound:?}",
            crate::baseline::store_location(cfg)
        ),
    };
    if cfg.store.is_some() {
        return Err(DaemonError::Store(err));
    }
    tracing::error!("runs are not stored nor judged: {err}");
    Ok(None)
}

/// Every few seconds: pings the store for `/readyz` and writes what waits in the spool.
async fn tend_store(shared: Arc<Shared>) {
    let Some(store) = shared.store() else { return };
    let mut tick = tokio::time::interval(STORE_TENDING);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut problem = store.ping().await.err().map(|e| e.to_string());
        if problem.is_none() && store.spooled() > 0 {
            match store.drain_spool().await {
                Ok(n) if n > 0 => tracing::info!(written = n, "baseline: spooled runs written"),
                Ok(_) => {}
                Err(e) => problem = Some(e.to_string()),
            }
        }
        shared.store_checked(problem);
    }
}

/// How often the store is pinged and its spool drained.
const STORE_TENDING: Duration = Duration::from_secs(5);

/// Resolves if the scheduler task has ended (it only ends on shutdown, so this is a bug guard).
async fn scheduler_died(handle: &tokio::task::JoinHandle<()>) {
    while !handle.is_finished() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
