//! External fault actions: a command (run without a shell unless the configuration asks for
//! one) or an HTTP call, each bounded by its timeout and by the caller's stop flag, each
//! returning an [`ActionRecord`] of what ran, when, and how it ended.
//!
//! This module runs exactly what it is given; it must not decide whether an action may run
//! (only configurations that declare actions reach it) and never logs secrets: a record names
//! the program and its arguments, or the method and the URL without query or credentials.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::FaultError;
use crate::config::{CommandActionConfig, FaultActionConfig, HttpActionConfig};

/// How often a running command is checked for its end, its timeout and the stop flag.
const POLL: Duration = Duration::from_millis(10);
/// Bytes of a command's output kept in its record (the end of it, where errors are).
const OUTPUT_TAIL: usize = 2048;
/// Bytes of an HTTP answer's body read at most.
const MAX_HTTP_BODY: u64 = 64 * 1024;

/// A command to run.
#[derive(Debug, Clone)]
pub struct CommandAction {
    /// Program and arguments; with `shell`, a single shell script.
    pub argv: Vec<String>,
    /// Run `argv[0]` with `sh -c`.
    pub shell: bool,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
    pub dir: Option<PathBuf>,
    /// The command is killed after this.
    pub timeout: Duration,
}

/// An HTTP request to send.
#[derive(Debug, Clone)]
pub struct HttpAction {
    pub method: http::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub timeout: Duration,
    /// Statuses that count as success; empty: any 2xx.
    pub expect_status: Vec<u16>,
}

/// One external fault action.
#[derive(Debug, Clone)]
pub enum FaultAction {
    Command(CommandAction),
    Http(HttpAction),
}

/// How an action ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ActionOutcome {
    /// The command exited (`code`), or was ended by a signal (`signal`).
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// The HTTP call was answered.
    Answered { status: u16 },
    /// Proxy toxics were switched.
    Applied,
    /// The action ran past its timeout (or the caller's deadline) and was ended.
    TimedOut,
    /// The stop flag was raised while it ran; it was ended.
    Stopped,
    /// It could not run or finish: cannot start, cannot connect, broken answer.
    Failed { error: String },
}

/// What one action did: the record a fault keeps of its inject and its clear.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRecord {
    /// What ran: `command pg_ctl stop -m immediate`, `http POST http://host:8474/proxies`,
    /// `toxics redis: down`.
    pub action: String,
    /// When it started and ended (RFC 3339, UTC).
    pub started_at: String,
    pub ended_at: String,
    pub duration_s: f64,
    /// Whether it did what it should (exit 0, an expected status, toxics applied).
    pub ok: bool,
    #[serde(flatten)]
    pub outcome: ActionOutcome,
    /// The end of the command's output (stdout and stderr), or of the HTTP answer's body.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// `started_at` and `ended_at` on the monotonic clock, for measuring against load
    /// windows (not in the document).
    #[serde(skip)]
    pub started: Instant,
    #[serde(skip)]
    pub ended: Instant,
}

impl ActionRecord {
    /// A record of something that took no time (a toxic switch).
    pub fn instant(action: String, outcome: ActionOutcome, ok: bool) -> Self {
        let now = Utc::now();
        let mono = Instant::now();
        ActionRecord {
            action,
            started_at: rfc3339(now),
            ended_at: rfc3339(now),
            duration_s: 0.0,
            ok,
            outcome,
            output: String::new(),
            started: mono,
            ended: mono,
        }
    }
}

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl FaultAction {
    /// The runtime form of a validated configuration.
    pub fn from_config(c: &FaultActionConfig) -> Result<Self, FaultError> {
        match (&c.command, &c.http) {
            (Some(cmd), None) => Ok(FaultAction::Command(CommandAction::from_config(cmd))),
            (None, Some(h)) => Ok(FaultAction::Http(HttpAction::from_config(h)?)),
            _ => Err(FaultError::Action(
                "an action needs exactly one of command and http".into(),
            )),
        }
    }

    /// What the action does, for logs and records; no secrets.
    pub fn describe(&self) -> String {
        match self {
            FaultAction::Command(c) => c.describe(),
            FaultAction::Http(h) => h.describe(),
        }
    }

    /// Runs the action to its end, its timeout, the `deadline`, or the stop flag, whichever
    /// comes first. Never fails: how it went is in the record.
    pub async fn run(&self, stop: Option<&AtomicBool>, deadline: Option<Instant>) -> ActionRecord {
        match self {
            FaultAction::Command(c) => c.run(stop, deadline).await,
            FaultAction::Http(h) => h.run(stop, deadline).await,
        }
    }
}

impl CommandAction {
    /// A command without a shell, environment or working directory of its own.
    pub fn new(argv: impl IntoIterator<Item = impl Into<String>>, timeout: Duration) -> Self {
        CommandAction {
            argv: argv.into_iter().map(Into::into).collect(),
            shell: false,
            env: Vec::new(),
            dir: None,
            timeout,
        }
    }

    pub fn from_config(c: &CommandActionConfig) -> Self {
        CommandAction {
            argv: c.argv.clone(),
            shell: c.shell,
            env: c
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_string()))
                .collect(),
            dir: c.dir.clone(),
            timeout: c.timeout.0,
        }
    }

    pub fn describe(&self) -> String {
        if self.shell {
            format!("command sh -c {:?}", self.argv.first().map_or("", |s| s))
        } else {
            format!("command {}", self.argv.join(" "))
        }
    }

    fn command(&self) -> Option<Command> {
        let mut cmd = if self.shell {
            let mut c = Command::new("sh");
            c.arg("-c").arg(self.argv.first()?);
            c
        } else {
            let mut c = Command::new(self.argv.first()?);
            c.args(&self.argv[1..]);
            c
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(d) = &self.dir {
            cmd.current_dir(d);
        }
        // Its own process group, so a timeout ends what it started too (a shell's children).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        Some(cmd)
    }

    async fn run(&self, stop: Option<&AtomicBool>, deadline: Option<Instant>) -> ActionRecord {
        let started = Utc::now();
        let t0 = Instant::now();
        let limit = deadline.map_or(t0 + self.timeout, |d| d.min(t0 + self.timeout));
        let record = |outcome: ActionOutcome, ok: bool, output: String| ActionRecord {
            action: self.describe(),
            started_at: rfc3339(started),
            ended_at: rfc3339(Utc::now()),
            duration_s: t0.elapsed().as_secs_f64(),
            ok,
            outcome,
            output,
            started: t0,
            ended: Instant::now(),
        };
        let Some(mut cmd) = self.command() else {
            return record(
                ActionOutcome::Failed {
                    error: "empty argv".into(),
                },
                false,
                String::new(),
            );
        };
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return record(
                    ActionOutcome::Failed {
                        error: format!("cannot start {:?}: {e}", self.argv[0]),
                    },
                    false,
                    String::new(),
                )
            }
        };
        let output = Arc::new(Mutex::new(Vec::new()));
        // Pipes are drained on threads of their own so a chatty command never blocks on a
        // full pipe; they end when the last holder of the pipe exits.
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = output.clone();
            std::thread::spawn(move || drain_tail(pipe, &out));
        }
        let tail = |output: &Arc<Mutex<Vec<u8>>>| {
            let o = output.lock().unwrap_or_else(|e| e.into_inner());
            String::from_utf8_lossy(&o).trim_end().to_string()
        };
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    // Give the readers a moment to pick up the last lines.
                    tokio::time::sleep(POLL).await;
                    use std::os::unix::process::ExitStatusExt;
                    return record(
                        ActionOutcome::Exited {
                            code: status.code(),
                            signal: status.signal(),
                        },
                        status.success(),
                        tail(&output),
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    kill_group(&mut child);
                    return record(
                        ActionOutcome::Failed {
                            error: format!("waiting for the command: {e}"),
                        },
                        false,
                        tail(&output),
                    );
                }
            }
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                kill_group(&mut child);
                return record(ActionOutcome::Stopped, false, tail(&output));
            }
            if Instant::now() >= limit {
                kill_group(&mut child);
                return record(ActionOutcome::TimedOut, false, tail(&output));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Kills the command and everything in its process group, and reaps it.
fn kill_group(child: &mut std::process::Child) {
    // The group id is the child's pid (process_group(0)); `kill -KILL -PGID` reaches the
    // grandchildren a shell may have left, which `Child::kill` alone would not.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads a pipe to its end, keeping the last [`OUTPUT_TAIL`] bytes.
fn drain_tail(mut pipe: Box<dyn Read + Send>, out: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            break;
        }
        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
        o.extend_from_slice(&buf[..n]);
        if o.len() > OUTPUT_TAIL {
            let cut = o.len() - OUTPUT_TAIL;
            o.drain(..cut);
        }
    }
}

impl HttpAction {
    pub fn from_config(c: &HttpActionConfig) -> Result<Self, FaultError> {
        let method = http::Method::from_bytes(c.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| FaultError::Action(format!("{:?} is not an HTTP method", c.method)))?;
        Ok(HttpAction {
            method,
            url: c.url.clone(),
            headers: c
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_string()))
                .collect(),
            body: Bytes::from(c.body.clone().unwrap_or_default()),
            timeout: c.timeout.0,
            expect_status: c.expect_status.clone(),
        })
    }

    /// `http POST http://host:8474/proxies/redis`: the URL without credentials or query.
    pub fn describe(&self) -> String {
        let shown = match self.url.parse::<http::Uri>() {
            Ok(u) => format!(
                "{}://{}{}",
                u.scheme_str().unwrap_or("http"),
                u.authority()
                    .map(|a| a.as_str().rsplit('@').next().unwrap_or("").to_string())
                    .unwrap_or_default(),
                u.path()
            ),
            Err(_) => "<invalid URL>".to_string(),
        };
        format!("http {} {shown}", self.method)
    }

    async fn run(&self, stop: Option<&AtomicBool>, deadline: Option<Instant>) -> ActionRecord {
        let started = Utc::now();
        let t0 = Instant::now();
        let limit = deadline.map_or(t0 + self.timeout, |d| d.min(t0 + self.timeout));
        let call = self.exchange();
        let stopped = async {
            loop {
                if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        };
        let (outcome, ok, output) = tokio::select! {
            r = tokio::time::timeout_at(limit.into(), call) => match r {
                Ok(Ok((status, body))) => {
                    let ok = if self.expect_status.is_empty() {
                        (200..300).contains(&status)
                    } else {
                        self.expect_status.contains(&status)
                    };
                    (ActionOutcome::Answered { status }, ok, body)
                }
                Ok(Err(error)) => (ActionOutcome::Failed { error }, false, String::new()),
                Err(_) => (ActionOutcome::TimedOut, false, String::new()),
            },
            _ = stopped => (ActionOutcome::Stopped, false, String::new()),
        };
        ActionRecord {
            action: self.describe(),
            started_at: rfc3339(started),
            ended_at: rfc3339(Utc::now()),
            duration_s: t0.elapsed().as_secs_f64(),
            ok,
            outcome,
            output,
            started: t0,
            ended: Instant::now(),
        }
    }

    /// One HTTP/1.1 exchange on a fresh connection, through the engine's client.
    async fn exchange(&self) -> Result<(u16, String), String> {
        use crate::engine::http::Endpoint;
        let uri: http::Uri = self.url.parse().map_err(|e| format!("invalid URL: {e}"))?;
        let base = Endpoint::parse_base(&self.url)?;
        let endpoint = Endpoint::new(
            base.clone(),
            crate::config::HttpVersion::Http1,
            &crate::config::TlsConfig::default(),
        )?;
        let addrs = endpoint.resolve().await.map_err(|e| e.message)?;
        let mut conn = endpoint.connect(&addrs).await.map_err(|e| e.message)?;
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::HOST,
            http::HeaderValue::from_str(&base.authority).map_err(|e| e.to_string())?,
        );
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        for (k, v) in &self.headers {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("invalid header name {k:?}"))?;
            let value = http::HeaderValue::from_str(v)
                .map_err(|_| format!("invalid value of header {k:?}"))?;
            headers.insert(name, value);
        }
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = Vec::new();
        crate::engine::h1::serialize_request(
            &mut request,
            &self.method,
            target,
            &headers,
            &self.body,
        );
        let mut body = Vec::new();
        let resp = conn
            .exchange_h1(
                &request,
                self.method == http::Method::HEAD,
                MAX_HTTP_BODY,
                Some(&mut body),
                None,
            )
            .await
            .map_err(|e| e.message)?;
        let start = body.len().saturating_sub(OUTPUT_TAIL);
        Ok((
            resp.status,
            String::from_utf8_lossy(&body[start..])
                .trim_end()
                .to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_hide_credentials_and_queries() {
        let h = HttpAction {
            method: http::Method::POST,
            url: "http://user:secret@127.0.0.1:8474/proxies/redis?token=abc".into(),
            headers: vec![],
            body: Bytes::new(),
            timeout: Duration::from_secs(1),
            expect_status: vec![],
        };
        assert_eq!(
            h.describe(),
            "http POST http://127.0.0.1:8474/proxies/redis"
        );
        let c = CommandAction::new(
            ["pg_ctl", "stop", "-m", "immediate"],
            Duration::from_secs(1),
        );
        assert_eq!(c.describe(), "command pg_ctl stop -m immediate");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_command_reports_its_exit_and_output() {
        let c = CommandAction::new(
            ["sh", "-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(5),
        );
        let r = c.run(None, None).await;
        assert_eq!(
            r.outcome,
            ActionOutcome::Exited {
                code: Some(3),
                signal: None
            }
        );
        assert!(!r.ok);
        assert!(
            r.output.contains("out") && r.output.contains("err"),
            "{r:?}"
        );
        let mut env = CommandAction::new(["printenv", "PLIMSOLL_FAULT_X"], Duration::from_secs(5));
        env.env.push(("PLIMSOLL_FAULT_X".into(), "42".into()));
        let r = env.run(None, None).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.output, "42");
        // No shell unless asked: the metacharacters reach the program as they are.
        let r = CommandAction::new(["echo", "$HOME;", "x"], Duration::from_secs(5))
            .run(None, None)
            .await;
        assert_eq!(r.output, "$HOME; x");
        let r = CommandAction::new(["/nonexistent/plimsoll"], Duration::from_secs(5))
            .run(None, None)
            .await;
        assert!(matches!(r.outcome, ActionOutcome::Failed { .. }), "{r:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_command_past_its_timeout_or_the_stop_is_killed_with_its_children() {
        let mut c = CommandAction::new(["sleep 30 & sleep 30; wait"], Duration::from_millis(200));
        c.shell = true;
        let t0 = Instant::now();
        let r = c.run(None, None).await;
        assert_eq!(r.outcome, ActionOutcome::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        let stop = AtomicBool::new(true);
        let c = CommandAction::new(["sleep", "30"], Duration::from_secs(60));
        let t0 = Instant::now();
        let r = c.run(Some(&stop), None).await;
        assert_eq!(r.outcome, ActionOutcome::Stopped);
        assert!(t0.elapsed() < Duration::from_secs(1));
        let r = c
            .run(None, Some(Instant::now() + Duration::from_millis(100)))
            .await;
        assert_eq!(r.outcome, ActionOutcome::TimedOut);
    }
}
