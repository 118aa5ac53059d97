//! `plimsoll demo`: the sample backend and the daemon on embedded defaults, on loopback.
//!
//! The backend is the `plimsoll-sample-backend` binary next to this one. Under `cargo run`
//! (which builds only the binary it runs) a missing backend is built first with the same
//! cargo and profile, so `cargo run --release -- demo` works on a fresh checkout.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::Exit;

/// The demo's configuration, with `@BACKEND@` and `@RESULTS@` placeholders.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// Name of the sample backend's binary.
const BACKEND_BIN: &str = "plimsoll-sample-backend";

/// Kills the backend when the demo ends, however it ends.
struct BackendProcess(Child);

impl Drop for BackendProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the demo until SIGINT or SIGTERM.
pub fn run(listen: SocketAddr) -> Exit {
    crate::daemon::init_logging();
    let backend_bin = match find_backend() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("plimsoll demo: {e}");
            return Exit::CannotStart;
        }
    };
    let (backend, backend_url) = match start_backend(&backend_bin) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("plimsoll demo: cannot start {}: {e}", backend_bin.display());
            return Exit::CannotStart;
        }
    };
    let results = std::env::temp_dir().join(format!("plimsoll-demo-{}", std::process::id()));
    let text = DEMO_CONFIG
        .replace("@BACKEND@", &backend_url)
        .replace(
            "@BACKEND_ADDR@",
            backend_url
                .trim_start_matches("http://")
                .trim_end_matches('/'),
        )
        .replace("@RESULTS@", &results.display().to_string());
    let config = match crate::config::load_str(&text, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            // The embedded file is tested; this only happens if the environment overrides it.
            eprintln!("plimsoll demo: the demo configuration is invalid:\n{e}");
            return Exit::Usage;
        }
    };
    let probes: Vec<String> = config.probe.iter().map(|p| p.name.clone()).collect();
    let opts = crate::daemon::Options {
        config_path: None,
        listen: Some(listen),
        on_ready: Some(Box::new(move |addr| {
            println!("Plimsoll demo is running (Ctrl-C to stop).");
            println!("  status page     http://{addr}/");
            println!("  metrics         http://{addr}/metrics");
            println!("  probes (JSON)   http://{addr}/api/v1/probes");
            println!("  sample backend  {backend_url}/health");
            println!("  results         {}", results.display());
            println!("  probes          {}", probes.join(", "));
        })),
    };
    let outcome = crate::daemon::run(config, opts);
    drop(backend);
    match outcome {
        Ok(()) => Exit::Success,
        Err(e) => {
            eprintln!("plimsoll demo: {e}");
            Exit::CannotStart
        }
    }
}

fn find_backend() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let bin = exe.with_file_name(BACKEND_BIN);
    if bin.is_file() {
        return Ok(bin);
    }
    // `cargo run` sets CARGO; build the backend with the same profile as this binary.
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Err(format!(
            "{} not found next to {}; build it with `cargo build --release --bins`",
            BACKEND_BIN,
            exe.display()
        ));
    };
    let release = exe
        .parent()
        .and_then(|d| d.file_name())
        .is_some_and(|n| n == "release");
    eprintln!("building {BACKEND_BIN} …");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--bin", BACKEND_BIN]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() || !bin.is_file() {
        return Err(format!("building {BACKEND_BIN} failed"));
    }
    Ok(bin)
}

/// Starts the backend on a free loopback port and reads the URL it prints.
fn start_backend(bin: &Path) -> std::io::Result<(BackendProcess, String)> {
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let guard = BackendProcess(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = tx.send(first);
        // Keep draining so the backend never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Some(Ok(l))) => l,
        _ => {
            return Err(std::io::Error::other(
                "the backend did not report its address within 10 s",
            ))
        }
    };
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or_else(|| std::io::Error::other(format!("unexpected backend output: {line}")))?
        .trim_end_matches('/')
        .to_string();
    Ok((guard, url))
}
