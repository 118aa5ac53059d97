//! The commands behind the binary, one file each: `once`, `load`, `validate`, `run`, `demo`,
//! `import`; the terminal progress line apart in [`progress`].
//!
//! Each command returns an [`Exit`]; `main.rs` turns it into the process code through the one
//! exit policy in `crate::exit`. Commands print for people; the library below them returns
//! typed errors and never exits.

mod baseline;
mod demo;
mod import;
mod load;
mod once;
mod progress;
mod proxy;
mod run;
mod validate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::config::HumanDuration;
pub use crate::exit::Exit;
pub use demo::DEMO_CONFIG;

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
    /// The run store and the regression detector's state: list, show, compare, accept, export.
    Baseline(baseline::BaselineArgs),
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
    /// Write the result documents to this file, one JSON document per line (`-`: stdout,
    /// with the summary on stderr).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print each probe's plan (requests, peak rate, duration, hosts, guardrails) and send
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Configuration file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Check structure only: leave `env:` and `file:` secrets unresolved (for CI on a
    /// machine without them).
    #[arg(long)]
    pub no_secrets: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The URL to load.
    pub url: String,
    /// Open model: arrivals per second (default 10 when --concurrency is not given either).
    #[arg(long, conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Closed model: concurrent users, each sending its next request as soon as the last
    /// one is answered (unpaced: start small).
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

/// Parses arguments; on failure (or `--help`, `--version`) prints clap's message and returns
/// how to exit.
pub fn parse() -> Result<Cli, Exit> {
    Cli::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            Exit::Usage
        } else {
            Exit::Success
        }
    })
}

/// Runs a parsed command and returns how to exit.
pub fn execute(cli: Cli) -> Exit {
    match cli.command {
        Command::Once(a) => once::once(a),
        Command::Load(a) => load::load(a),
        Command::Validate(a) => validate::validate(a),
        Command::Run(a) => run::run_daemon(a),
        Command::Demo(a) => demo::run(a.listen),
        Command::Import(ImportCommand::Artillery(a)) => import::import_artillery(&a.file),
        Command::Proxy(a) => proxy::proxy(&a.config),
        Command::Baseline(a) => baseline::baseline(a),
    }
}

/// Writes to stdout, ignoring a closed pipe (`plimsoll load … --json | head` must not panic).
pub(crate) fn stdout(text: &str) {
    use std::io::Write as _;
    let text = crate::report::terminal::escape_block(text);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

pub(crate) fn print_config_errors(file: &std::path::Path, e: &config::ConfigErrors) {
    eprintln!("{}: {} problem(s):", file.display(), e.0.len());
    for err in &e.0 {
        eprintln!("  {err}");
    }
}
