//! Settings of faults: the built-in fault proxy (its listeners and their toxics, also the
//! file of `plimsoll proxy --config FILE`) and the external fault actions (a command or an
//! HTTP call, each with its clear action).
//!
//! Like the rest of `config`, this module only reads and checks: it never binds, connects or
//! runs anything, and never echoes a secret. The runtime forms live in `crate::fault`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, ConfigErrors, HumanDuration, Problems, Secret};

/// The fault proxy: named listeners, each forwarding to an upstream, each with the toxics it
/// starts with. This is the whole file of `plimsoll proxy --config FILE`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// How long the proxy waits, after SIGTERM or a stop, for open connections to end on
    /// their own before it closes them.
    #[serde(default = "default_proxy_grace")]
    pub grace_period: HumanDuration,
    /// The listeners (`[[listener]]`), at least one.
    #[serde(default)]
    pub listener: Vec<ProxyListenerConfig>,
}

/// One listening address of the proxy and the upstream it forwards to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyListenerConfig {
    /// Name the toxics are switched by (`redis`, `postgres`); unique in the proxy.
    pub name: String,
    /// Address to accept connections on (`127.0.0.1:16379`; port 0 picks a free one).
    pub listen: String,
    /// Where accepted connections are forwarded (`127.0.0.1:6379`, `redis.staging:6379`);
    /// resolved at each new connection.
    pub upstream: String,
    /// Toxics active from the start (`[[listener.toxic]]`); none is a plain copy.
    #[serde(default)]
    pub toxic: Vec<ToxicConfig>,
}

/// One toxic: what it does to the traffic of a listener, in which direction, on which share
/// of the connections. Only the fields of its `kind` may be given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToxicConfig {
    /// What the toxic does: `down` (refuse new connections, close open ones), `blackhole`
    /// (accept, forward nothing), `latency`, `bandwidth`, `slow_close`, `reset_peer`,
    /// `limit_data`.
    pub kind: ToxicKindName,
    /// The traffic it acts on: `upstream` (client to server), `downstream` (server to
    /// client) or `both`. `down` always acts on the whole listener.
    #[serde(default = "default_direction")]
    pub direction: ToxicDirection,
    /// Probability, from 0 to 1, that the toxic applies to a connection; drawn once per
    /// connection when the toxic is set.
    #[serde(default = "default_toxicity")]
    pub toxicity: f64,
    /// `latency`: delay added to every chunk of data.
    #[serde(default)]
    pub latency: Option<HumanDuration>,
    /// `latency`: the delay varies uniformly by up to this much either way.
    #[serde(default)]
    pub jitter: Option<HumanDuration>,
    /// `bandwidth`: most bytes per second forwarded on a connection, per direction.
    #[serde(default)]
    pub bytes_per_second: Option<u64>,
    /// `slow_close`: how long the close of a connection is held back.
    #[serde(default)]
    pub delay: Option<HumanDuration>,
    /// `reset_peer`: time after the toxic is set (or the connection opens) before the
    /// connection is reset (TCP RST). Default: at once.
    #[serde(default)]
    pub after: Option<HumanDuration>,
    /// `limit_data`: bytes forwarded in the direction before the connection is closed.
    #[serde(default)]
    pub bytes: Option<u64>,
}

/// The kinds of toxic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToxicKindName {
    Down,
    Blackhole,
    Latency,
    Bandwidth,
    SlowClose,
    ResetPeer,
    LimitData,
}

impl ToxicKindName {
    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            ToxicKindName::Down => "down",
            ToxicKindName::Blackhole => "blackhole",
            ToxicKindName::Latency => "latency",
            ToxicKindName::Bandwidth => "bandwidth",
            ToxicKindName::SlowClose => "slow_close",
            ToxicKindName::ResetPeer => "reset_peer",
            ToxicKindName::LimitData => "limit_data",
        }
    }
}

/// Which way of the traffic a toxic acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToxicDirection {
    /// Client to upstream.
    Upstream,
    /// Upstream to client.
    Downstream,
    /// Both ways.
    Both,
}

/// One fault action: exactly one of `command` and `http`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultActionConfig {
    /// Run a command (`pg_ctl stop -m immediate`).
    #[serde(default)]
    pub command: Option<CommandActionConfig>,
    /// Call an HTTP endpoint (a chaos tool's or Toxiproxy's API).
    #[serde(default)]
    pub http: Option<HttpActionConfig>,
}

/// A command run as a fault action or its clear.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandActionConfig {
    /// Program and arguments, run directly without a shell (`["pg_ctl", "restart", "-m",
    /// "fast"]`). With `shell = true`, exactly one element: the shell script.
    pub argv: Vec<String>,
    /// Run `argv[0]` with `sh -c`. Off by default: no shell unless asked for.
    #[serde(default = "default_false")]
    pub shell: bool,
    /// Environment variables added to the command's (values may be `env:`/`file:`
    /// references).
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// Working directory. Default: the daemon's.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Longest run; the command is killed after it and the action counts as failed.
    #[serde(default = "default_action_timeout")]
    pub timeout: HumanDuration,
}

/// An HTTP request sent as a fault action or its clear.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpActionConfig {
    /// Request method.
    #[serde(default = "default_http_method")]
    pub method: String,
    /// URL (`http://` or `https://`).
    pub url: String,
    /// Request headers (values may be `env:`/`file:` references).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Request body.
    #[serde(default)]
    pub body: Option<String>,
    /// Longest wait for the whole answer.
    #[serde(default = "default_action_timeout")]
    pub timeout: HumanDuration,
    /// Statuses that count as success. Default: any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
}

fn default_proxy_grace() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn default_direction() -> ToxicDirection {
    ToxicDirection::Downstream
}
fn default_toxicity() -> f64 {
    1.0
}
fn default_false() -> bool {
    false
}
fn default_action_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_http_method() -> String {
    "POST".to_string()
}

/// Longest grace period of the standalone proxy.
pub const MAX_PROXY_GRACE: HumanDuration = HumanDuration::from_secs(600);

impl ProxyConfig {
    /// Checks the listeners; `path` is the prefix of every problem's path (empty for the
    /// standalone file).
    pub fn validate(&mut self, path: &str, problems: &mut Problems) {
        if self.grace_period > MAX_PROXY_GRACE {
            problems.push(
                join(path, "grace_period"),
                format!("must be at most {MAX_PROXY_GRACE}"),
            );
        }
        if self.listener.is_empty() {
            problems.push(join(path, "listener"), "at least one listener is needed");
        }
        let mut names = std::collections::HashSet::new();
        for (i, l) in self.listener.iter_mut().enumerate() {
            let p = join(path, &format!("listener[{i}]"));
            if !l.name.is_empty() && !names.insert(l.name.clone()) {
                problems.push(
                    format!("{p}.name"),
                    format!("duplicate listener name {:?}", l.name),
                );
            }
            l.validate(&p, problems);
        }
    }
}

impl ProxyListenerConfig {
    /// Checks the addresses and the toxics.
    pub fn validate(&mut self, path: &str, problems: &mut Problems) {
        if self.name.trim().is_empty() {
            problems.push(format!("{path}.name"), "must not be empty");
        }
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(
                format!("{path}.listen"),
                format!(
                    "{:?} is not an address: write IP:PORT such as 127.0.0.1:16379",
                    self.listen
                ),
            );
        }
        if let Err(m) = check_host_port(&self.upstream) {
            problems.push(format!("{path}.upstream"), m);
        }
        for (i, t) in self.toxic.iter().enumerate() {
            t.validate(&format!("{path}.toxic[{i}]"), problems);
        }
    }
}

/// `host:port` with a numeric port and a non-empty host.
fn check_host_port(s: &str) -> Result<(), String> {
    let bad = || format!("{s:?} is not HOST:PORT such as 127.0.0.1:6379");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    if host.trim_matches(['[', ']']).is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

impl ToxicConfig {
    /// Checks the probability and that exactly the fields of the kind are given.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        if !(0.0..=1.0).contains(&self.toxicity) {
            problems.push(format!("{path}.toxicity"), "must be between 0 and 1");
        }
        let kind = self.kind;
        // Which optional fields the kind uses, and which of them it requires.
        let (allowed, required): (&[&str], &[&str]) = match kind {
            ToxicKindName::Down | ToxicKindName::Blackhole => (&[], &[]),
            ToxicKindName::Latency => (&["latency", "jitter"], &["latency"]),
            ToxicKindName::Bandwidth => (&["bytes_per_second"], &["bytes_per_second"]),
            ToxicKindName::SlowClose => (&["delay"], &["delay"]),
            ToxicKindName::ResetPeer => (&["after"], &[]),
            ToxicKindName::LimitData => (&["bytes"], &["bytes"]),
        };
        let given = [
            ("latency", self.latency.is_some()),
            ("jitter", self.jitter.is_some()),
            ("bytes_per_second", self.bytes_per_second.is_some()),
            ("delay", self.delay.is_some()),
            ("after", self.after.is_some()),
            ("bytes", self.bytes.is_some()),
        ];
        for (field, is_given) in given {
            if is_given && !allowed.contains(&field) {
                problems.push(
                    format!("{path}.{field}"),
                    format!("not a setting of a {} toxic", kind.as_str()),
                );
            }
            if !is_given && required.contains(&field) {
                problems.push(
                    format!("{path}.{field}"),
                    format!("a {} toxic needs it", kind.as_str()),
                );
            }
        }
        if self.bytes_per_second == Some(0) {
            problems.push(
                format!("{path}.bytes_per_second"),
                "must be greater than 0 (use a blackhole toxic to forward nothing)",
            );
        }
        if let (Some(l), Some(j)) = (self.latency, self.jitter) {
            if j > l {
                problems.push(
                    format!("{path}.jitter"),
                    format!("must not exceed the latency ({l})"),
                );
            }
        }
        if self.latency.is_some_and(|l| l.is_zero()) {
            problems.push(format!("{path}.latency"), "must be greater than 0");
        }
    }
}

impl FaultActionConfig {
    /// Checks that exactly one action is given and checks it, resolving its secrets.
    pub fn validate(&mut self, path: &str, problems: &mut Problems) {
        match (&mut self.command, &mut self.http) {
            (Some(c), None) => c.validate(&format!("{path}.command"), problems),
            (None, Some(h)) => h.validate(&format!("{path}.http"), problems),
            (Some(_), Some(_)) => {
                problems.push(path.to_string(), "give either command or http, not both")
            }
            (None, None) => problems.push(path.to_string(), "needs a command or an http action"),
        }
    }
}

impl CommandActionConfig {
    /// Checks the argument vector and timeout, resolving the environment's secrets.
    pub fn validate(&mut self, path: &str, problems: &mut Problems) {
        if self.argv.is_empty() || self.argv[0].trim().is_empty() {
            problems.push(format!("{path}.argv"), "needs at least the program");
        } else if self.shell && self.argv.len() != 1 {
            problems.push(
                format!("{path}.argv"),
                "with shell = true, give the script as the only element",
            );
        }
        if self.timeout.is_zero() {
            problems.push(format!("{path}.timeout"), "must be greater than 0");
        }
        for (name, value) in self.env.iter_mut() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                problems.push(
                    format!("{path}.env.{name}"),
                    "not a valid environment variable name",
                );
            }
            if let Err(m) = value.resolve() {
                problems.push(format!("{path}.env.{name}"), m);
            }
        }
    }
}

impl HttpActionConfig {
    /// Checks the method, URL and timeout, resolving the headers' secrets.
    pub fn validate(&mut self, path: &str, problems: &mut Problems) {
        if self.method.is_empty() || !self.method.bytes().all(|b| b.is_ascii_alphabetic()) {
            problems.push(
                format!("{path}.method"),
                format!("{:?} is not an HTTP method", self.method),
            );
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            problems.push(format!("{path}.url"), "must start with http:// or https://");
        }
        if self.timeout.is_zero() {
            problems.push(format!("{path}.timeout"), "must be greater than 0");
        }
        for s in &self.expect_status {
            if !(100..=599).contains(s) {
                problems.push(
                    format!("{path}.expect_status"),
                    format!("{s} is not an HTTP status"),
                );
            }
        }
        for (name, value) in self.headers.iter_mut() {
            if let Err(m) = value.resolve() {
                problems.push(format!("{path}.headers.{name}"), m);
            }
        }
    }
}

/// Reads and checks the file of `plimsoll proxy --config FILE`.
pub fn load_proxy_file(path: &std::path::Path) -> Result<ProxyConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
            line: None,
        }])
    })?;
    load_proxy_str(&text)
}

/// Same as [`load_proxy_file`] on text.
pub fn load_proxy_str(text: &str) -> Result<ProxyConfig, ConfigErrors> {
    let mut cfg: ProxyConfig = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: e.message().to_string(),
            line,
        }])
    })?;
    let mut problems = Problems::default();
    cfg.validate("", &mut problems);
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors(problems.into_errors()))
    }
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(text: &str) -> Vec<String> {
        match load_proxy_str(text) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_full_file_reads() {
        let cfg = load_proxy_str(
            r#"
grace_period = "2s"
[[listener]]
name = "redis"
listen = "127.0.0.1:16379"
upstream = "127.0.0.1:6379"
[[listener.toxic]]
kind = "latency"
direction = "both"
latency = "100ms"
jitter = "10ms"
toxicity = 0.5
"#,
        )
        .unwrap();
        assert_eq!(cfg.listener.len(), 1);
        assert_eq!(cfg.listener[0].toxic[0].kind, ToxicKindName::Latency);
        assert_eq!(cfg.listener[0].toxic[0].direction, ToxicDirection::Both);
        assert_eq!(cfg.grace_period, HumanDuration::from_secs(2));
    }

    #[test]
    fn every_problem_is_named_by_its_path() {
        let p = problems_of(
            r#"
[[listener]]
name = "a"
listen = "nowhere"
upstream = "127.0.0.1"
[[listener.toxic]]
kind = "latency"
toxicity = 2.0
bytes = 3
[[listener]]
name = "a"
listen = "127.0.0.1:0"
upstream = "db:5432"
[[listener.toxic]]
kind = "bandwidth"
bytes_per_second = 0
"#,
        );
        assert_eq!(
            p,
            vec![
                r#"listener[0].listen: "nowhere" is not an address: write IP:PORT such as 127.0.0.1:16379"#,
                r#"listener[0].upstream: "127.0.0.1" is not HOST:PORT such as 127.0.0.1:6379"#,
                "listener[0].toxic[0].toxicity: must be between 0 and 1",
                "listener[0].toxic[0].latency: a latency toxic needs it",
                "listener[0].toxic[0].bytes: not a setting of a latency toxic",
                r#"listener[1].name: duplicate listener name "a""#,
                "listener[1].toxic[0].bytes_per_second: must be greater than 0 (use a blackhole toxic to forward nothing)",
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_line() {
        let p = problems_of(
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nupstream = \"a:1\"\nport = 3\n",
        );
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("unknown field `port`"), "{p:?}");
        assert!(p[0].ends_with("(line 5)"), "{p:?}");
        assert_eq!(
            problems_of(""),
            vec!["listener: at least one listener is needed"]
        );
    }

    #[test]
    fn actions_need_exactly_one_kind() {
        let mut problems = Problems::default();
        FaultActionConfig::default().validate("probe[0].fault.inject", &mut problems);
        let mut a: FaultActionConfig = toml::from_str(
            "command = { argv = [\"a\", \"b\"], shell = true, timeout = \"0s\" }\nhttp = { url = \"ftp://x\" }",
        )
        .unwrap();
        a.validate("x", &mut problems);
        let mut c: CommandActionConfig = toml::from_str(
            "argv = [\"echo\"]\nshell = true\nenv = { A = \"env:PLIMSOLL_TEST_UNSET_VAR\" }",
        )
        .unwrap();
        c.validate("c", &mut problems);
        let mut h: HttpActionConfig =
            toml::from_str("url = \"mail://x\"\nmethod = \"P T\"\nexpect_status = [99]").unwrap();
        h.validate("h", &mut problems);
        let p: Vec<String> = problems
            .into_errors()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            p,
            vec![
                "probe[0].fault.inject: needs a command or an http action",
                "x: give either command or http, not both",
                "c.env.A: environment variable PLIMSOLL_TEST_UNSET_VAR is not set",
                r#"h.method: "P T" is not an HTTP method"#,
                "h.url: must start with http:// or https://",
                "h.expect_status: 99 is not an HTTP status",
            ]
        );
    }
}
