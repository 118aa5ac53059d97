//! Malformed configurations, one file each (blackbox_exporter's `config/testdata` style).
//!
//! Every `tests/data/bad-configs/NNN-name.toml` starts with `# expect: PATH: MESSAGE` (the
//! text `plimsoll validate` must print) and may add `# env: NAME=VALUE` lines (environment
//! overrides for the run). Each file must make `plimsoll validate` exit 3 with that text,
//! within a timeout, without a panic. Regression: issue 10.3 (absurd values validated and ran
//! away; `nan` rates got "a phase needs rate"; `/dev/zero` was read without end).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest one `validate` may take; far above the few milliseconds a file needs.
const RUN_LIMIT: Duration = Duration::from_secs(10);

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with the arguments and environment, killing it at [`RUN_LIMIT`].
fn run(args: &[&str], env: &[(String, String)]) -> Result<Outcome, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plimsoll"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("PLIMSOLL__") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    // Readers on their own threads, so a full pipe never stalls the child.
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {RUN_LIMIT:?} (a hang)"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Outcome {
        code: status.code(),
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    })
}

#[test]
fn every_bad_config_exits_3_with_its_exact_path() {
    let dir = Path::new("tests/data/bad-configs");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 100, "only {} bad configs", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        let mut lines = text.lines();
        let expect = lines
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no `# expect:` first line", f.display()))
            .to_string();
        let env: Vec<(String, String)> = lines
            .map_while(|l| l.strip_prefix("# env: "))
            .map(|l| {
                let (k, v) = l.split_once('=').expect("# env: NAME=VALUE");
                (k.to_string(), v.to_string())
            })
            .collect();
        let name = f.display().to_string();
        match run(&["validate", "--config", &name], &env) {
            Err(e) => failures.push(format!("{name}: {e}")),
            Ok(o) => {
                let all = format!("{}{}", o.stdout, o.stderr);
                if all.contains("panicked") || o.code == Some(101) {
                    failures.push(format!("{name}: PANIC\n{all}"));
                } else if o.code != Some(3) {
                    failures.push(format!("{name}: exit {:?}, not 3\n{all}", o.code));
                } else if !o.stderr.contains(&expect) {
                    failures.push(format!("{name}: missing {expect:?} in\n{}", o.stderr));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad configs failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
    eprintln!("{} malformed configurations refused", files.len());
}

/// Regression (issue 10.3): `--config /dev/zero` was read without end.
#[test]
fn an_endless_config_file_is_refused_after_10_mib() {
    let o = run(&["validate", "--config", "/dev/zero"], &[]).unwrap();
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("cannot read /dev/zero: larger than 10485760 bytes"),
        "{}",
        o.stderr
    );
}

/// Regression (issue 10.3): `plimsoll load URL --rate 2e9 --duration 1s` ran away (3.6 GiB in
/// 8 s, Ctrl-C ignored). Flags go through the same ceilings as files; nothing is sent (the
/// port is closed, and the run must not start at all).
#[test]
fn absurd_load_flags_are_refused_before_any_request() {
    for (flags, expect) in [
        (
            &["--rate", "2e9"][..],
            "probe[0].load.phases[0].rate: must be at most 100000 per second",
        ),
        (
            &["--rate", "nan"][..],
            "probe[0].load.phases[0].rate: must be a finite number",
        ),
        (
            &["--rate", "inf"][..],
            "probe[0].load.phases[0].rate: must be a finite number",
        ),
        (
            &["--concurrency", "10000000"][..],
            "probe[0].load.concurrency: must be at most 10000",
        ),
        (
            &["--workers", "100000"][..],
            "probe[0].load.workers: must be at most 256",
        ),
        (&["--duration", "30d"][..], "must be at most 1day"),
        (
            &["--max-in-flight", "4000000000"][..],
            "probe[0].load.max_in_flight: must be at most 100000",
        ),
    ] {
        let mut args = vec!["load", "http://127.0.0.1:9/"];
        args.extend_from_slice(flags);
        let o = run(&args, &[]).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        assert_eq!(o.code, Some(3), "{flags:?}: {}", o.stderr);
        assert!(o.stderr.contains(expect), "{flags:?}: {}", o.stderr);
    }
}
