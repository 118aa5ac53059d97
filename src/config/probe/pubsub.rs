//! Settings of the `pubsub` probe kind (seed 003's Redis pub/sub delivery over WebSocket):
//! subscribers on a WebSocket URL, publishers at a rate through an HTTP endpoint or Redis
//! `PUBLISH`, and how long to wait for late deliveries.
//!
//! Like the rest of `config`, this module only reads and checks; it connects to nothing.

use serde::Deserialize;

use super::stores::{check_url, RedisTlsConfig};
use crate::config::{Ceiling, HumanDuration, Limits, Problems, Secret};

/// How the probe publishes its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishVia {
    /// `POST` of the message as a JSON body to `publish_url`.
    Http,
    /// `PUBLISH channel message` on the Redis server at `redis_url`.
    Redis,
}

/// Settings of a pub/sub delivery probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubsubConfig {
    /// WebSocket URL the subscribers connect to (`ws://…` or `wss://…`; with a `target`, a
    /// path joined to its host). Every text message received there is inspected.
    pub url: String,
    /// Subscriber connections (seed 003: 200).
    #[serde(default = "default_subscribers")]
    pub subscribers: u32,
    /// Messages published per second, all publishers together (seed 003: 500).
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// How long messages are published.
    #[serde(default = "default_duration")]
    pub duration: HumanDuration,
    /// Concurrent publishers sharing the rate (seed 003: 10); a slow publish delays only its
    /// own publisher's next message.
    #[serde(default = "default_publishers")]
    pub publishers: u32,
    /// `http` (POST to `publish_url`) or `redis` (PUBLISH to `channel` at `redis_url`).
    #[serde(default = "default_publish")]
    pub publish: PublishVia,
    /// With `publish = "http"`: the URL messages are POSTed to (with a `target`, a path
    /// joined to it). Each body is the JSON message itself.
    #[serde(default)]
    pub publish_url: Option<String>,
    /// With `publish = "redis"`: the Redis URL; use an `env:` or `file:` reference when it
    /// holds a password.
    #[serde(default)]
    pub redis_url: Option<Secret>,
    /// With `publish = "redis"` and a `rediss://` URL: its TLS settings (`ca_file`,
    /// `insecure_skip_verify`, `client_cert`, `client_key`). Default: verify the server
    /// against the bundled web roots.
    #[serde(default)]
    pub redis_tls: Option<RedisTlsConfig>,
    /// With `publish = "redis"`: the channel messages are published to.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// Pause between the last subscriber connecting and the first publish, so the service
    /// has registered every subscriber before messages flow.
    #[serde(default = "default_warmup")]
    pub warmup: HumanDuration,
    /// After the last publish, how long subscribers keep listening for late deliveries
    /// (the wait ends early once every expected delivery arrived).
    #[serde(default = "default_grace")]
    pub grace: HumanDuration,
    /// Timeout of each subscriber's connection and of each publish.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_subscribers() -> u32 {
    10
}
fn default_rate() -> f64 {
    50.0
}
fn default_duration() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_publishers() -> u32 {
    1
}
fn default_publish() -> PublishVia {
    PublishVia::Http
}
fn default_channel() -> String {
    "events".to_string()
}
fn default_warmup() -> HumanDuration {
    HumanDuration::from_millis(250)
}
fn default_grace() -> HumanDuration {
    HumanDuration::from_secs(2)
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

/// Most subscriber connections of one probe.
pub const MAX_SUBSCRIBERS: u32 = 2000;
/// Most messages of one run: every subscriber keeps a bit per message.
pub const MAX_MESSAGES: f64 = 10_000_000.0;

impl PubsubConfig {
    /// Messages the run plans to publish.
    pub fn planned_messages(&self) -> u64 {
        (self.rate * self.duration.as_duration().as_secs_f64()).ceil() as u64
    }

    /// Checks the settings; `has_target` says whether relative URLs can be joined.
    pub fn validate(
        &mut self,
        path: &str,
        has_target: bool,
        limits: &Limits,
        problems: &mut Problems,
    ) {
        for (name, d) in [
            ("duration", self.duration),
            ("warmup", self.warmup),
            ("grace", self.grace),
            ("timeout", self.timeout),
        ] {
            limits.check_duration(format!("{path}.{name}"), d, problems);
        }
        limits.check_count(
            format!("{path}.publishers"),
            self.publishers.into(),
            Ceiling::Concurrency,
            problems,
        );
        let ws = self.url.starts_with("ws://") || self.url.starts_with("wss://");
        if !(ws || has_target && self.url.starts_with('/')) {
            problems.push(
                format!("{path}.url"),
                "must be a ws:// or wss:// URL, or a path when the probe names a `target`",
            );
        }
        if !(1..=MAX_SUBSCRIBERS).contains(&self.subscribers) {
            problems.push(
                format!("{path}.subscribers"),
                format!("must be between 1 and {MAX_SUBSCRIBERS}"),
            );
        }
        let mut rate = Problems::default();
        limits.check_rate(format!("{path}.rate"), self.rate, false, &mut rate);
        if !rate.is_empty() {
            problems.errors.extend(rate.into_errors());
        } else if self.planned_messages() as f64 > MAX_MESSAGES {
            problems.push(
                format!("{path}.rate"),
                format!("rate × duration must stay under {MAX_MESSAGES} messages"),
            );
        }
        if self.duration.is_zero() {
            problems.push(format!("{path}.duration"), "must be greater than 0");
        }
        if self.publishers == 0 {
            problems.push(format!("{path}.publishers"), "must be greater than 0");
        }
        if self.timeout.is_zero() {
            problems.push(format!("{path}.timeout"), "must be greater than 0");
        }
        match self.publish {
            PublishVia::Http => match &self.publish_url {
                None => problems.push(
                    format!("{path}.publish_url"),
                    "missing: `publish = \"http\"` needs the URL messages are POSTed to",
                ),
                Some(u) => {
                    let absolute = u.starts_with("http://") || u.starts_with("https://");
                    if !(absolute || has_target && u.starts_with('/')) {
                        problems.push(
                            format!("{path}.publish_url"),
                            "must be an http:// or https:// URL, or a path when the probe \
                             names a `target`",
                        );
                    } else if let Err(e) = crate::config::url::check_request_url(u) {
                        problems.push(format!("{path}.publish_url"), e);
                    }
                }
            },
            PublishVia::Redis => match &mut self.redis_url {
                None => problems.push(
                    format!("{path}.redis_url"),
                    "missing: `publish = \"redis\"` needs the Redis server to PUBLISH on",
                ),
                Some(url) => check_url(
                    url,
                    &format!("{path}.redis_url"),
                    &["redis://", "rediss://", "redis+unix://", "unix://"],
                    "a Redis URL (redis://…)",
                    problems,
                ),
            },
        }
        if let Some(tls) = &self.redis_tls {
            let tls_path = format!("{path}.redis_tls");
            match (&self.redis_url, self.publish) {
                (Some(url), PublishVia::Redis) => tls.validate(url, &tls_path, problems),
                _ => problems.push(tls_path, "applies only with `publish = \"redis\"`"),
            }
        }
        if self.publish == PublishVia::Redis && self.channel.is_empty() {
            problems.push(format!("{path}.channel"), "must not be empty");
        }
    }
}
