//! The `pubsub` kind: seed 003's Redis pub/sub delivery over WebSocket. `subscribers`
//! WebSocket connections listen; publishers send `rate` messages per second for `duration`
//! through an HTTP endpoint or Redis `PUBLISH`; each message carries the run's id, a sequence
//! number and its send time, so every subscriber can tell what it got, what it got twice,
//! what came out of order and what never came, and how long each took end to end.
//!
//! The result's `stats` counts the publishes (a publish is a request, endpoint `publish`,
//! latency from its planned time); the `pubsub` block holds the deliveries. A run is graded
//! on both. What it must not do: count another run's or another sender's messages, stop
//! before the grace period for late deliveries (unless everything arrived), or panic on a
//! subscriber that cannot connect (it received nothing, and that is data).

mod tracker;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

pub use tracker::{Receipt, SeqSet, SequenceTracker, Stamp};
use wire::{listen, open_socket, unix_micros, HttpPublisher, Publisher, SubscriberEnd};

use super::ops::{abandoned_note, runtime, unless_stopped, OpTally};
use super::{ProbeKind, RunContext, Sends};
use crate::config::{
    Config, GuardrailsConfig, ProbeConfig, PublishVia, PubsubConfig, TargetConfig,
};
use crate::engine::recorder::new_histogram;
use crate::report::{round3, KindBlock, LatencySummary, ProbeResult, PubsubStats, SubscriberStats};
use crate::verdict::{self, grade_with, Verdict, HTTP_DEFAULTS};

/// How often the grace period checks whether every delivery arrived.
const GRACE_POLL: Duration = Duration::from_millis(10);

pub struct PubsubProbe;

impl ProbeKind for PubsubProbe {
    type Config = PubsubConfig;

    fn urls(p: &PubsubConfig) -> Vec<&str> {
        let mut urls = vec![p.url.as_str()];
        urls.extend(p.publish_url.as_deref());
        urls
    }

    fn cap(g: &GuardrailsConfig, p: &mut PubsubConfig, notes: &mut Vec<String>) {
        if let Some(m) = g.max_rate {
            if p.rate > m {
                notes.push(format!(
                    "held to guardrails.max_rate: {m} publishes/s instead of {}",
                    p.rate
                ));
                p.rate = m;
            }
        }
    }

    fn sends(p: &PubsubConfig) -> Sends {
        Sends {
            peak_rps: Some(p.rate),
            ..Sends::default()
        }
    }

    fn run(
        config: &Config,
        probe: &ProbeConfig,
        cfg: &PubsubConfig,
        ctx: &RunContext,
    ) -> ProbeResult {
        let rt = match runtime(2) {
            Ok(r) => r,
            Err(e) => return ProbeResult::failed(probe, format!("cannot start a runtime: {e}")),
        };
        let started = SystemTime::now();
        let t0 = std::time::Instant::now();
        match rt.block_on(run(cfg, config.target_of(probe), &ctx.stop)) {
            Ok(mut outcome) => {
                let elapsed = t0.elapsed();
                let stats = outcome
                    .publishes
                    .into_stats(outcome.publish_time, Some((outcome.planned, cfg.rate)));
                let mut verdict =
                    grade_with(&probe.thresholds, probe.target_rps, &stats, &HTTP_DEFAULTS);
                grade_deliveries(&probe.thresholds, &outcome.deliveries, &mut verdict);
                if ctx.stop.load(Ordering::Relaxed) {
                    outcome.notes.push("stopped before the run ended".into());
                }
                ProbeResult::graded(
                    probe,
                    started,
                    elapsed,
                    Some(stats),
                    Some(KindBlock::Pubsub(outcome.deliveries)),
                    verdict,
                    outcome.notes,
                    Default::default(),
                )
            }
            Err(e) => ProbeResult::failed(probe, e),
        }
    }
}

/// Grades deliveries against the probe's thresholds and seed 003's defaults.
pub fn grade_deliveries(t: &verdict::ThresholdsConfig, p: &PubsubStats, v: &mut Verdict) {
    if p.expected_deliveries == 0 {
        v.force(
            verdict::Grade::Critical,
            "no delivery was expected: nothing was published, or no subscriber was asked for",
        );
        return;
    }
    let per_delivery = |n: u64| n as f64 / p.expected_deliveries as f64;
    v.higher_better(
        "delivery_ratio",
        p.delivery_ratio,
        t.delivery_ratio.unwrap_or(verdict::DEFAULT_DELIVERY_RATIO),
    );
    let anomaly = verdict::DEFAULT_DELIVERY_ANOMALY_RATIO;
    v.lower_better(
        "duplicate_ratio",
        per_delivery(p.duplicates),
        t.duplicate_ratio.unwrap_or(anomaly),
    );
    v.lower_better(
        "out_of_order_ratio",
        per_delivery(p.out_of_order),
        t.out_of_order_ratio.unwrap_or(anomaly),
    );
    if p.delivered > 0 {
        v.lower_better(
            "delivery_p95",
            p.latency_ms.p95,
            t.delivery_p95_ms
                .unwrap_or(verdict::DEFAULT_DELIVERY_P95_MS),
        );
        v.lower_better(
            "delivery_p99",
            p.latency_ms.p99,
            t.delivery_p99_ms
                .unwrap_or(verdict::DEFAULT_DELIVERY_P99_MS),
        );
    }
}

struct Outcome {
    publishes: OpTally,
    publish_time: Duration,
    planned: u64,
    deliveries: PubsubStats,
    notes: Vec<String>,
}

/// Joins a path to the target's URL with the scheme swapped (`https` → `wss`).
fn resolve(url: &str, target: Option<&TargetConfig>, websocket: bool) -> String {
    match target {
        Some(t) if url.starts_with('/') => {
            let base = t.url.trim_end_matches('/');
            let base = if websocket {
                base.replacen("https://", "wss://", 1)
                    .replacen("http://", "ws://", 1)
            } else {
                base.to_string()
            };
            format!("{base}{url}")
        }
        _ => url.to_string(),
    }
}

async fn run(
    cfg: &PubsubConfig,
    target: Option<&TargetConfig>,
    stop: &Arc<AtomicBool>,
) -> Result<Outcome, String> {
    let tls = target.map(|t| t.tls.clone()).unwrap_or_default();
    let run_id = format!("{:016x}", fastrand::u64(..));
    let planned = cfg.planned_messages();
    let publishers = cfg.publishers;
    let mut notes = Vec::new();

    // Publishers are made first: a publish endpoint that cannot even be resolved, or a Redis
    // URL that does not parse, makes the run pointless.
    let mut senders = Vec::new();
    match cfg.publish {
        PublishVia::Http => {
            let url = resolve(
                cfg.publish_url.as_deref().unwrap_or_default(),
                target,
                false,
            );
            let headers: Vec<(String, String)> = target
                .map(|t| {
                    t.headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.expose().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            for _ in 0..publishers {
                let publisher = unless_stopped(stop, HttpPublisher::new(&url, &tls, &headers))
                    .await
                    .ok_or_else(stopped_in_setup)??;
                senders.push(Publisher::Http(publisher));
            }
        }
        PublishVia::Redis => {
            let url = cfg
                .redis_url
                .as_ref()
                .map(|s| s.expose())
                .unwrap_or_default();
            let client = crate::probe::redis_client::client(url, cfg.redis_tls.as_ref())?;
            let connect = client.get_multiplexed_async_connection();
            let conn = unless_stopped(
                stop,
                tokio::time::timeout(cfg.timeout.as_duration(), connect),
            )
            .await
            .ok_or_else(stopped_in_setup)?
            .map_err(|_| "connecting to the publishing Redis timed out".to_string())?
            .map_err(|e| format!("connecting to the publishing Redis: {e}"))?;
            for _ in 0..publishers {
                senders.push(Publisher::Redis {
                    conn: conn.clone(),
                    channel: cfg.channel.clone(),
                });
            }
        }
    }

    // Every subscriber connects before anything is published.
    let ws_url = resolve(&cfg.url, target, true);
    let timeout = cfg.timeout.as_duration();
    let opened = futures_util::future::join_all((0..cfg.subscribers).map(|_| {
        let stop = Arc::clone(stop);
        let (url, tls) = (ws_url.clone(), tls.clone());
        async move {
            match unless_stopped(
                &stop,
                tokio::time::timeout(timeout, open_socket(&url, &tls)),
            )
            .await
            {
                Some(Ok(r)) => r,
                Some(Err(_)) => Err(format!("connecting took over {timeout:?}")),
                None => Err(stopped_in_setup()),
            }
        }
    }))
    .await;
    let (done_tx, done_rx) = watch::channel(false);
    let received = Arc::new(AtomicU64::new(0));
    let mut listeners = Vec::new();
    let mut first_error = None;
    for socket in opened {
        let tracker = SequenceTracker::new(planned, publishers);
        listeners.push(match socket {
            Ok(ws) => {
                let (run_id, done, received) = (run_id.clone(), done_rx.clone(), received.clone());
                Some(tokio::spawn(async move {
                    listen(ws, &run_id, tracker, done, received).await
                }))
            }
            Err(e) => {
                first_error.get_or_insert(format!("connect: {e}"));
                None
            }
        });
    }
    let connected = listeners.iter().filter(|l| l.is_some()).count() as u64;
    if connected > 0 && !cfg.warmup.is_zero() {
        unless_stopped(stop, tokio::time::sleep(cfg.warmup.as_duration())).await;
    }

    // Publishing: message `seq` is due at `seq / rate` and sent by publisher `seq % P`.
    let t0 = tokio::time::Instant::now();
    let names = vec!["publish".to_string()];
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(k, mut sender)| {
            let (run_id, stop, names) = (run_id.clone(), Arc::clone(stop), names.clone());
            let rate = cfg.rate;
            tokio::spawn(async move {
                let mut tally = OpTally::new(&names, true);
                let mut ok = SeqSet::new(planned);
                for seq in (k as u64..planned).step_by(publishers as usize) {
                    let due = t0 + Duration::from_secs_f64(seq as f64 / rate);
                    if unless_stopped(&stop, tokio::time::sleep_until(due))
                        .await
                        .is_none()
                    {
                        break;
                    }
                    let at = tokio::time::Instant::now();
                    tally.lag(at - due);
                    let body = Stamp {
                        plimsoll: run_id.clone(),
                        seq,
                        sent_us: unix_micros(),
                    }
                    .to_json();
                    let publish = tokio::time::timeout(timeout, sender.publish(&body));
                    let Some(r) = unless_stopped(&stop, publish).await else {
                        tally.abandoned += 1;
                        break;
                    };
                    let end = tokio::time::Instant::now();
                    let error = match r {
                        Ok(Ok(())) => {
                            ok.insert(seq);
                            None
                        }
                        Ok(Err(e)) => Some(e),
                        Err(_) => Some(("timeout", format!("no answer within {timeout:?}"))),
                    };
                    let error = error.as_ref().map(|(k, m)| (*k, m.as_str()));
                    tally.record(0, end - due, end - at, error);
                }
                (tally, ok)
            })
        })
        .collect();
    let mut publishes = OpTally::new(&names, true);
    let mut published = SeqSet::new(planned);
    for t in tasks {
        match t.await {
            Ok((tally, ok)) => {
                publishes.merge(&tally);
                published.union(&ok);
            }
            Err(e) => notes.push(format!("a publisher failed: {e}")),
        }
    }
    let publish_time = t0.elapsed();
    notes.extend(abandoned_note(publishes.abandoned));

    // Grace: wait for late deliveries, or until every expected one arrived.
    let expected = published.len() * connected;
    let grace_end = tokio::time::Instant::now() + cfg.grace.as_duration();
    while received.load(Ordering::Relaxed) < expected
        && tokio::time::Instant::now() < grace_end
        && !stop.load(Ordering::Relaxed)
    {
        tokio::time::sleep(GRACE_POLL).await;
    }
    let _ = done_tx.send(true);

    let mut ends: Vec<Option<SubscriberEnd>> = Vec::new();
    for l in listeners {
        ends.push(match l {
            Some(h) => h.await.ok(),
            None => None,
        });
    }
    let deliveries = tally_deliveries(cfg, &published, publishes.errors(), ends, first_error);
    if deliveries.unexpected > 0 {
        notes.push(format!(
            "{} delivery(ies) of messages whose publish was reported failed",
            deliveries.unexpected
        ));
    }
    Ok(Outcome {
        publishes,
        publish_time,
        planned,
        deliveries,
        notes,
    })
}

/// Adds up the subscribers' trackers against the messages published successfully.
fn tally_deliveries(
    cfg: &PubsubConfig,
    published: &SeqSet,
    publish_errors: u64,
    ends: Vec<Option<SubscriberEnd>>,
    mut first_error: Option<String>,
) -> PubsubStats {
    let n = published.len();
    let mut latency = new_histogram();
    let mut s = PubsubStats {
        subscribers: cfg.subscribers,
        published: n,
        publish_errors,
        expected_deliveries: n * u64::from(cfg.subscribers),
        ..Default::default()
    };
    for (i, end) in ends.into_iter().enumerate() {
        let mut sub = SubscriberStats {
            subscriber: i as u32,
            lost: n,
            ..Default::default()
        };
        if let Some(e) = end {
            let (delivered, lost, unexpected) = e.tracker.settle(published);
            sub.connected = true;
            sub.delivered = delivered;
            sub.lost = lost;
            sub.duplicates = e.tracker.duplicates;
            sub.out_of_order = e.tracker.out_of_order;
            s.connected += 1;
            s.unexpected += unexpected;
            s.foreign += e.foreign;
            let _ = latency.add(&e.tracker.latency);
            if let Some(err) = e.error {
                first_error.get_or_insert(format!("subscriber {i}: {err}"));
            }
        }
        sub.delivery_ratio = if n > 0 {
            round6(sub.delivered as f64 / n as f64)
        } else {
            0.0
        };
        s.delivered += sub.delivered;
        s.lost += sub.lost;
        s.duplicates += sub.duplicates;
        s.out_of_order += sub.out_of_order;
        s.per_subscriber.push(sub);
    }
    s.delivery_ratio = if s.expected_deliveries > 0 {
        round6(s.delivered as f64 / s.expected_deliveries as f64)
    } else {
        0.0
    };
    s.latency_ms = LatencySummary::from_micros(&latency);
    s.subscriber_error = first_error;
    s
}

/// Six decimals: a ratio of a million deliveries keeps its last one.
fn round6(v: f64) -> f64 {
    round3(v * 1000.0) / 1000.0
}

/// Why a run stopped before it could publish anything.
fn stopped_in_setup() -> String {
    "stopped while connecting, before anything was published".to_string()
}
