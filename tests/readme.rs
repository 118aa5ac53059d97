//! The README runs as written: every shell command in its ```sh blocks, in order, against the
//! binaries of this build, from the repository's root (issue 11, "The first hour").
//!
//! Commands that run until stopped (the sample backend, `demo`, `run`) are started, checked
//! (their `--listen` address accepts connections and they are still running) and stopped
//! with SIGINT, as a person's Ctrl-C, at the end of their block; they must then exit 0. Every
//! other command must exit 0 within its time bound. The only rewriting: `target/release/…`
//! becomes this build's binaries, and the README's fixed loopback ports become free ones (the
//! examples' target URL follows through `PLIMSOLL__TARGET__0__URL`), so the test can run
//! beside others.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Commands the test does not run, and why. Everything else in a ```sh block runs.
const SKIPPED: &[(&str, &str)] = &[
    // The build: cargo built this test's binaries already, from the same sources.
    (
        "cargo build",
        "the test runs against the build cargo made for it",
    ),
    // The whole suite, this test included: running it here would recurse.
    ("scripts/test", "runs every test, this one included"),
];

/// The README's fixed loopback ports, replaced by free ones.
const PORTS: &[&str] = &["127.0.0.1:8080", "127.0.0.1:9464", "127.0.0.1:9465"];

/// Longest a short command may take (the longest README run is 10 s of load).
const COMMAND_BOUND: Duration = Duration::from_secs(120);

/// The ```sh blocks of a Markdown text: their commands, continuation lines joined, comments
/// and blank lines left out.
fn sh_blocks(md: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    let mut pending = String::new();
    for line in md.lines() {
        let t = line.trim();
        match &mut current {
            None if t == "```sh" => current = Some(Vec::new()),
            None => {}
            Some(_) if t == "```" => blocks.push(current.take().unwrap()),
            Some(cmds) => {
                if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
                    continue;
                }
                match t.strip_suffix('\\') {
                    Some(head) => {
                        pending.push_str(head);
                        pending.push(' ');
                    }
                    None => {
                        pending.push_str(t);
                        cmds.push(std::mem::take(&mut pending));
                    }
                }
            }
        }
    }
    blocks
}

/// Whether the command's `--config FILE` has a `[[target]]`.
fn config_has_target(root: &Path, cmd: &str) -> bool {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    words
        .iter()
        .position(|w| *w == "--config")
        .and_then(|i| words.get(i + 1))
        .and_then(|f| std::fs::read_to_string(root.join(f)).ok())
        .is_some_and(|text| text.contains("[[target]]"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A started long-running command; killed if the test fails before stopping it.
struct Running {
    command: String,
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_of(r: &Running) -> String {
    std::fs::read_to_string(&r.log).unwrap_or_default()
}

fn is_long_running(cmd: &str) -> bool {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    words
        .first()
        .is_some_and(|w| w.ends_with("plimsoll-sample-backend"))
        || (words.first().is_some_and(|w| w.ends_with("/plimsoll"))
            && matches!(words.get(1), Some(&"demo") | Some(&"run")))
}

fn listen_addr(cmd: &str) -> Option<SocketAddr> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "--listen")?;
    words.get(i + 1)?.parse().ok()
}

fn stop(mut r: Running) {
    let pid = r.child.id() as libc::pid_t;
    // SAFETY: signalling a child we started and have not reaped.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = r.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "`{}` did not stop within 30 s of SIGINT:\n{}",
            r.command,
            log_of(&r)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "`{}` ended with {status} after SIGINT:\n{}",
        r.command,
        log_of(&r)
    );
}

#[test]
fn every_readme_command_works_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    assert!(blocks.len() >= 3, "no ```sh blocks found");
    let ports: Vec<(String, String)> = PORTS
        .iter()
        .map(|p| (p.to_string(), format!("127.0.0.1:{}", free_port())))
        .collect();
    let backend_url = format!("http://{}", ports[0].1);
    let logs = tempfile::tempdir().unwrap();
    let mut ran = 0;
    for block in blocks {
        let mut running: Vec<Running> = Vec::new();
        for written in block {
            if let Some((_, why)) = SKIPPED.iter().find(|(p, _)| written.starts_with(p)) {
                eprintln!("skipped `{written}`: {why}");
                continue;
            }
            let mut cmd = written
                .replace(
                    "target/release/plimsoll-sample-backend",
                    env!("CARGO_BIN_EXE_plimsoll-sample-backend"),
                )
                .replace(
                    "target/release/plimsoll ",
                    &format!("{} ", env!("CARGO_BIN_EXE_plimsoll")),
                );
            for (from, to) in &ports {
                cmd = cmd.replace(from.as_str(), to);
            }
            let mut command = Command::new("sh");
            command
                .current_dir(root)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null());
            // An example's first target is the sample backend on 127.0.0.1:8080: point it
            // at the backend's free port (only where the file has a target to point).
            if config_has_target(root, &cmd) {
                command.env("PLIMSOLL__TARGET__0__URL", &backend_url);
            }
            ran += 1;
            if is_long_running(&cmd) {
                let log = logs.path().join(format!("{ran}.log"));
                let out = std::fs::File::create(&log).unwrap();
                let child = command
                    .arg("-c")
                    .arg(format!("exec {cmd}"))
                    .stdout(out.try_clone().unwrap())
                    .stderr(out)
                    .spawn()
                    .unwrap();
                let mut r = Running {
                    command: written.clone(),
                    child,
                    log,
                };
                let addr = listen_addr(&cmd).unwrap_or_else(|| {
                    panic!("`{written}` runs until stopped but has no --listen")
                });
                let t0 = Instant::now();
                while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                    if let Some(s) = r.child.try_wait().unwrap() {
                        panic!("`{written}` exited ({s}) before listening:\n{}", log_of(&r));
                    }
                    assert!(
                        t0.elapsed() < Duration::from_secs(60),
                        "`{written}` did not listen on {addr} within 60 s:\n{}",
                        log_of(&r)
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
                eprintln!("started `{written}` (listening on {addr})");
                running.push(r);
                continue;
            }
            let mut child = command
                .arg("-c")
                .arg(&cmd)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let t0 = Instant::now();
            let status = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break s;
                }
                if t0.elapsed() > COMMAND_BOUND {
                    let _ = child.kill();
                    panic!("`{written}` took longer than {COMMAND_BOUND:?}");
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            let (mut out, mut err) = (String::new(), String::new());
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(
                status.success(),
                "`{written}` failed ({status}):\n--- stdout\n{out}\n--- stderr\n{err}"
            );
            eprintln!("ran `{written}` in {:.1?}", t0.elapsed());
        }
        for r in running.into_iter().rev() {
            stop(r);
        }
    }
    assert!(ran >= 8, "only {ran} commands ran");
}
