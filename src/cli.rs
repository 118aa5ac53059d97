//! The commands behind the binary: `once`, `load` and `validate`.
//!
//! Each command returns an exit code (DESIGN.md: 0 excellent or good, 1 warning, 2 critical,
//! 3 usage or configuration error); `main.rs` only parses arguments and exits with it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, HumanDuration, LoadConfig, ProbeConfig, Secret, TargetConfig};
use crate::engine::template::RequestConfig;
use crate::engine::Progress;
use crate::probe::{run_probe, RunContext};
use crate::report::{self, ProbeResult};
use crate::verdict::Grade;

/// Exit code of usage and configuration errors.
pub const EXIT_USAGE: i32 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "plimsoll",
    version,
    about = "Keeps measuring how much load a service can carry before it breaks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the configured probes now, print a summary, write JSON results, exit with the verdict.
    Once(OnceArgs),
    /// Ad hoc load against one URL.
    Load(LoadArgs),
    /// Check a configuration and say exactly what is wrong.
    Validate(ValidateArgs),
    /// The daemon: run the probes on their schedules and serve /metrics.
    Run(RunArgs),
    /// Start the sample backend and the daemon on embedded defaults, on loopback.
    Demo(DemoArgs),
    /// Convert another tool's script into a Plimsoll configuration (printed on stdout).
    #[command(subcommand)]
    Import(ImportCommand),
    /// The fault proxy on its own: listeners forwarding to upstreams, with toxics.
    Proxy(ProxyArgs),
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Proxy file (TOML): `[[listener]]` entries with their toxics.
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Scripts `plimsoll import` converts.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// An Artillery script (YAML): prints the configuration on stdout and lists on stderr
    /// what could not be converted.
    Artillery(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The script to convert.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (TOML); SIGHUP reads it again.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Address of the HTTP endpoints, replacing `daemon.listen`.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the daemon's HTTP endpoints.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct OnceArgs {
    /// Configuration file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Run only these probes (repeatable); default: all.
    #[arg(long = "probe")]
    pub probes: Vec<String>,
    /// Write the result documents to this file, one JSON document per line.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Configuration file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The URL to load.
    pub url: String,
    /// Open model: arrivals per second.
    #[arg(long, conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Closed model: concurrent users (default 10 when --rate is not given).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// How long to run.
    #[arg(long, default_value = "10s")]
    pub duration: HumanDuration,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Request header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long)]
    pub body: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "10s")]
    pub timeout: HumanDuration,
    /// HTTP version: 1.1, 2 or auto.
    #[arg(long, default_value = "auto")]
    pub http: String,
    /// Accept any TLS certificate (test targets only).
    #[arg(long)]
    pub insecure: bool,
    /// Open model: most iterations in flight at once.
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: u32,
    /// Print the result document on stdout (the summary goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Parses arguments; on failure prints clap's message and returns the exit code.
pub fn parse() -> Result<Cli, i32> {
    Cli::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            EXIT_USAGE
        } else {
            0
        }
    })
}

/// Runs a parsed command and returns the process exit code.
pub fn execute(cli: Cli) -> i32 {
    match cli.command {
        Command::Once(a) => once(a),
        Command::Load(a) => load(a),
        Command::Validate(a) => validate(a),
        Command::Run(a) => run_daemon(a),
        Command::Demo(a) => crate::daemon::demo::run(a.listen),
        Command::Import(ImportCommand::Artillery(a)) => import_artillery(&a.file),
        Command::Proxy(a) => proxy(&a.config),
    }
}

/// `plimsoll proxy`: 3 for a bad file, 4 when a listener cannot be bound.
fn proxy(file: &std::path::Path) -> i32 {
    crate::daemon::init_logging();
    match crate::fault::run_proxy(file) {
        Ok(()) => 0,
        Err(crate::fault::FaultError::Config(e)) => {
            print_config_errors(file, &e);
            EXIT_USAGE
        }
        Err(e) => {
            eprintln!("plimsoll proxy: {e}");
            4
        }
    }
}

/// Converts an Artillery script: the configuration on stdout, what was not converted on
/// stderr; 0 once converted (even with omissions), 3 for a file that is not a script.
fn import_artillery(file: &std::path::Path) -> i32 {
    let converted = std::fs::read_to_string(file)
        .map_err(|source| crate::import::ImportError::Read {
            path: file.display().to_string(),
            source,
        })
        .and_then(|text| {
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "artillery".into());
            crate::import::artillery::convert(&text, &name)
        });
    match converted {
        Ok(c) => {
            if !c.dropped.is_empty() {
                eprintln!(
                    "plimsoll import artillery: {} item(s) not converted or changed:",
                    c.dropped.len()
                );
                for d in &c.dropped {
                    eprintln!("  {d}");
                }
            }
            stdout(&c.toml);
            0
        }
        Err(e) => {
            eprintln!("plimsoll import artillery: {}: {e}", file.display());
            EXIT_USAGE
        }
    }
}

fn run_daemon(a: RunArgs) -> i32 {
    let cfg = match config::load_file(&a.config) {
        Ok(c) => c,
        Err(e) => {
            print_config_errors(&a.config, &e);
            return EXIT_USAGE;
        }
    };
    crate::daemon::init_logging();
    crate::daemon::run(
        cfg,
        crate::daemon::Options {
            config_path: Some(a.config),
            listen: a.listen,
            on_ready: None,
        },
    )
}

fn print_config_errors(file: &std::path::Path, e: &config::ConfigErrors) {
    eprintln!("{}: {} problem(s):", file.display(), e.0.len());
    for err in &e.0 {
        eprintln!("  {err}");
    }
}

fn validate(a: ValidateArgs) -> i32 {
    match config::load_file(&a.config) {
        Ok(c) => {
            println!(
                "{}: ok ({} target(s), {} probe(s))",
                a.config.display(),
                c.target.len(),
                c.probe.len()
            );
            0
        }
        Err(e) => {
            print_config_errors(&a.config, &e);
            EXIT_USAGE
        }
    }
}

fn once(a: OnceArgs) -> i32 {
    let cfg = match config::load_file(&a.config) {
        Ok(c) => c,
        Err(e) => {
            print_config_errors(&a.config, &e);
            return EXIT_USAGE;
        }
    };
    for name in &a.probes {
        if !cfg.probe.iter().any(|p| &p.name == name) {
            let known: Vec<&str> = cfg.probe.iter().map(|p| p.name.as_str()).collect();
            eprintln!(
                "no probe named {name:?} in {} (known: {})",
                a.config.display(),
                known.join(", ")
            );
            return EXIT_USAGE;
        }
    }
    let selected: Vec<&ProbeConfig> = cfg
        .probe
        .iter()
        .filter(|p| a.probes.is_empty() || a.probes.contains(&p.name))
        .collect();
    if selected.is_empty() {
        eprintln!("{}: no probe to run", a.config.display());
        return EXIT_USAGE;
    }
    let stop = interrupt_flag();
    let mut results = Vec::new();
    for p in selected {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        results.push(run_with_progress(&cfg, p, &stop));
    }
    stdout(&report::summary::render(&results));
    let mut code = worst_exit(&results);
    if let Some(out) = &a.out {
        if let Err(e) = report::write_json_lines(out, &results) {
            eprintln!("cannot write results to {}: {e}", out.display());
            code = code.max(EXIT_USAGE);
        }
    } else if !cfg.report.dir.is_empty() {
        match report::write_into_dir(std::path::Path::new(&cfg.report.dir), &results) {
            Ok(paths) => {
                for p in paths {
                    eprintln!("wrote {}", p.display());
                }
            }
            Err(e) => {
                eprintln!("cannot write results into {}: {e}", cfg.report.dir);
                code = code.max(EXIT_USAGE);
            }
        }
    }
    code
}

/// Writes to stdout, ignoring a closed pipe (`plimsoll load … --json | head` must not panic).
fn stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

fn worst_exit(results: &[ProbeResult]) -> i32 {
    results
        .iter()
        .map(|r| r.grade)
        .max()
        .unwrap_or(Grade::Critical)
        .exit_code()
}

fn load(a: LoadArgs) -> i32 {
    let (cfg, probe) = match load_config(&a) {
        Ok(x) => x,
        Err(errors) => {
            eprintln!("plimsoll load: {} problem(s):", errors.len());
            for e in errors {
                eprintln!("  {e}");
            }
            return EXIT_USAGE;
        }
    };
    let stop = interrupt_flag();
    let result = run_with_progress(&cfg, &probe, &stop);
    let summary = report::summary::render(std::slice::from_ref(&result));
    if a.json {
        eprint!("{summary}");
        stdout(&(result.to_json_pretty() + "\n"));
    } else {
        stdout(&summary);
    }
    result.grade.exit_code()
}

/// Turns `load` flags into the same configuration a file would give, and validates it the
/// same way, so the command line and files cannot drift apart.
fn load_config(a: &LoadArgs) -> Result<(Config, ProbeConfig), Vec<String>> {
    let mut problems = Vec::new();
    let http = match a.http.as_str() {
        "1.1" | "1" => config::HttpVersion::Http1,
        "2" => config::HttpVersion::Http2,
        "auto" => config::HttpVersion::Auto,
        other => {
            problems.push(format!("--http: {other:?} is not one of 1.1, 2, auto"));
            config::HttpVersion::Auto
        }
    };
    let base = match crate::engine::http::Endpoint::parse_base(&a.url) {
        Ok(_) => {
            let uri: http::Uri = a.url.parse().expect("checked above");
            let scheme = uri.scheme_str().unwrap_or("http");
            let auth = uri.authority().map(|x| x.as_str()).unwrap_or("");
            format!("{scheme}://{auth}")
        }
        Err(e) => {
            problems.push(format!("URL: {e}"));
            String::new()
        }
    };
    let mut request = RequestConfig::simple(&a.method, &a.url);
    for h in &a.headers {
        match h.split_once(':') {
            Some((k, v)) => {
                request
                    .headers
                    .insert(k.trim().to_string(), Secret::literal(v.trim()));
            }
            None => problems.push(format!("--header {h:?}: write it as `Name: value`")),
        }
    }
    request.body = a.body.clone();
    let mut load = LoadConfig::closed(a.concurrency.unwrap_or(10), a.duration);
    if let Some(rate) = a.rate {
        load.concurrency = None;
        load.phases = vec![config::PhaseConfig {
            name: Some("constant".into()),
            duration: Some(a.duration),
            rate: Some(rate),
            ramp_to: None,
            burst: None,
        }];
    }
    load.timeout = a.timeout;
    load.workers = a.workers;
    if let Some(m) = a.max_in_flight {
        load.max_in_flight = m;
    }
    load.request = Some(request);
    let target = TargetConfig {
        name: "cli".into(),
        url: base,
        http,
        tls: config::TlsConfig {
            insecure_skip_verify: a.insecure,
            ..Default::default()
        },
        headers: Default::default(),
    };
    let probe = ProbeConfig {
        name: "load".into(),
        kind: "load".into(),
        target: Some("cli".into()),
        target_rps: None,
        thresholds: Default::default(),
        schedule: None,
        share_target: false,
        load: Some(load),
        race: None,
        redis: None,
        pubsub: None,
        sql: None,
        benchmark: None,
    };
    let mut cfg = Config {
        target: vec![target],
        probe: vec![probe],
        report: config::ReportConfig { dir: String::new() },
        daemon: Default::default(),
        otlp: Default::default(),
    };
    if problems.is_empty() {
        let mut p = config::Problems::default();
        cfg.validate(&mut p);
        problems.extend(p.into_errors().into_iter().map(|e| e.to_string()));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let probe = cfg.probe[0].clone();
    Ok((cfg, probe))
}

/// A flag set by Ctrl-C: the running probe stops and reports what it measured so far.
fn interrupt_flag() -> Arc<AtomicBool> {
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
fn run_with_progress(cfg: &Config, probe: &ProbeConfig, stop: &Arc<AtomicBool>) -> ProbeResult {
    let mut ctx = RunContext {
        stop: stop.clone(),
        on_start: None,
        trace: None,
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
