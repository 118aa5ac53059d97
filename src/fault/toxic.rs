//! Toxics: what the fault proxy does to a listener's traffic, and the per-connection,
//! per-direction view of a set of toxics that the forwarding loop acts on.
//!
//! This module only decides (which toxics apply to a connection, how long a chunk waits, how
//! fast bytes may go); it never touches a socket. The proxy (`super::pipe`) does the I/O.

use std::time::Duration;

use crate::config::{ToxicConfig, ToxicDirection, ToxicKindName};

/// Which way of a connection's traffic a toxic acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to upstream.
    Upstream,
    /// Upstream to client.
    Downstream,
    /// Both ways.
    Both,
}

impl Direction {
    fn covers(self, way: Way) -> bool {
        matches!(
            (self, way),
            (Direction::Both, _)
                | (Direction::Upstream, Way::Upstream)
                | (Direction::Downstream, Way::Downstream)
        )
    }
}

/// One of the two ways of a connection (a [`Direction`] without `Both`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Upstream,
    Downstream,
}

/// What a toxic does.
#[derive(Debug, Clone, PartialEq)]
pub enum ToxicKind {
    /// Refuse new connections (the listening socket is closed while it is on, when it applies
    /// to every connection) and close open ones.
    Down,
    /// Accept connections and read what comes, forward nothing.
    Blackhole,
    /// Hold every chunk `latency ± jitter` (uniform) before forwarding it; order is kept.
    Latency { latency: Duration, jitter: Duration },
    /// Forward at most this many bytes per second per connection and direction.
    Bandwidth { bytes_per_second: u64 },
    /// Hold back the close of the connection by this long once the sender has closed.
    SlowClose { delay: Duration },
    /// Reset the connection (TCP RST) this long after the toxic is set or the connection
    /// opens.
    ResetPeer { after: Duration },
    /// Close the connection once this many bytes have been forwarded in the direction.
    LimitData { bytes: u64 },
}

impl ToxicKind {
    /// The name used in configuration files.
    pub fn name(&self) -> &'static str {
        match self {
            ToxicKind::Down => "down",
            ToxicKind::Blackhole => "blackhole",
            ToxicKind::Latency { .. } => "latency",
            ToxicKind::Bandwidth { .. } => "bandwidth",
            ToxicKind::SlowClose { .. } => "slow_close",
            ToxicKind::ResetPeer { .. } => "reset_peer",
            ToxicKind::LimitData { .. } => "limit_data",
        }
    }
}

/// A toxic on a listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Toxic {
    pub kind: ToxicKind,
    /// Ignored by `down`, which acts on the whole listener.
    pub direction: Direction,
    /// Probability (0 to 1) that the toxic applies to a given connection.
    pub toxicity: f64,
}

impl Toxic {
    /// A toxic on every connection, in the given direction.
    pub fn new(kind: ToxicKind, direction: Direction) -> Self {
        Toxic {
            kind,
            direction,
            toxicity: 1.0,
        }
    }

    /// `down` on every connection.
    pub fn down() -> Self {
        Toxic::new(ToxicKind::Down, Direction::Both)
    }

    /// The same toxic applied to this share of the connections.
    pub fn with_toxicity(mut self, toxicity: f64) -> Self {
        self.toxicity = toxicity.clamp(0.0, 1.0);
        self
    }

    /// The runtime form of a validated configuration.
    pub fn from_config(c: &ToxicConfig) -> Toxic {
        let d = |v: Option<crate::config::HumanDuration>| v.map(|v| v.0).unwrap_or_default();
        let kind = match c.kind {
            ToxicKindName::Down => ToxicKind::Down,
            ToxicKindName::Blackhole => ToxicKind::Blackhole,
            ToxicKindName::Latency => ToxicKind::Latency {
                latency: d(c.latency),
                jitter: d(c.jitter),
            },
            ToxicKindName::Bandwidth => ToxicKind::Bandwidth {
                bytes_per_second: c.bytes_per_second.unwrap_or(1).max(1),
            },
            ToxicKindName::SlowClose => ToxicKind::SlowClose { delay: d(c.delay) },
            ToxicKindName::ResetPeer => ToxicKind::ResetPeer { after: d(c.after) },
            ToxicKindName::LimitData => ToxicKind::LimitData {
                bytes: c.bytes.unwrap_or(0),
            },
        };
        let direction = match c.direction {
            ToxicDirection::Upstream => Direction::Upstream,
            ToxicDirection::Downstream => Direction::Downstream,
            ToxicDirection::Both => Direction::Both,
        };
        Toxic {
            kind,
            direction,
            toxicity: c.toxicity.clamp(0.0, 1.0),
        }
    }

    /// `latency(both 100ms±10ms)`: for logs and action records.
    pub fn describe(&self) -> String {
        let dir = match self.direction {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
            Direction::Both => "both",
        };
        let what = match &self.kind {
            ToxicKind::Down => return self.with_share("down".to_string()),
            ToxicKind::Blackhole => String::new(),
            ToxicKind::Latency { latency, jitter } => format!(" {latency:?}±{jitter:?}"),
            ToxicKind::Bandwidth { bytes_per_second } => format!(" {bytes_per_second} B/s"),
            ToxicKind::SlowClose { delay } => format!(" {delay:?}"),
            ToxicKind::ResetPeer { after } => format!(" after {after:?}"),
            ToxicKind::LimitData { bytes } => format!(" {bytes} B"),
        };
        self.with_share(format!("{}({dir}{what})", self.kind.name()))
    }

    fn with_share(&self, s: String) -> String {
        if self.toxicity < 1.0 {
            format!("{s}@{}", self.toxicity)
        } else {
            s
        }
    }
}

/// The toxics of a listener at one moment; `generation` changes with every switch, so a
/// connection draws its toxicity again for a new set.
#[derive(Debug, Clone, Default)]
pub struct ToxicSet {
    pub generation: u64,
    pub toxics: Vec<Toxic>,
}

impl ToxicSet {
    /// Whether the listening socket must be closed: a `down` that applies to everyone.
    pub fn refuses_all(&self) -> bool {
        self.toxics
            .iter()
            .any(|t| t.kind == ToxicKind::Down && t.toxicity >= 1.0)
    }

    /// Whether the toxic at `index` applies to the connection drawn as `seed`. Both ways of
    /// a connection get the same answer without sharing state: the draw is a pure function
    /// of the connection's seed, the set's generation and the index.
    pub fn applies(&self, index: usize, seed: u64) -> bool {
        let t = &self.toxics[index];
        if t.toxicity >= 1.0 {
            return true;
        }
        if t.toxicity <= 0.0 {
            return false;
        }
        let x = splitmix64(seed ^ self.generation.rotate_left(32) ^ (index as u64).rotate_left(17));
        // 53 high bits → a uniform float in [0, 1).
        ((x >> 11) as f64 / (1u64 << 53) as f64) < t.toxicity
    }

    /// What one way of one connection must do under this set.
    pub fn view(&self, way: Way, seed: u64) -> WayToxics {
        let mut v = WayToxics::default();
        for (i, t) in self.toxics.iter().enumerate() {
            if !self.applies(i, seed) {
                continue;
            }
            if t.kind == ToxicKind::Down {
                v.down = true;
                continue;
            }
            if !t.direction.covers(way) {
                continue;
            }
            match t.kind {
                ToxicKind::Down => {}
                ToxicKind::Blackhole => v.blackhole = true,
                ToxicKind::Latency { latency, jitter } => {
                    v.latency = Some((latency, jitter));
                }
                ToxicKind::Bandwidth { bytes_per_second } => {
                    v.bytes_per_second = Some(bytes_per_second.max(1));
                }
                ToxicKind::SlowClose { delay } => v.slow_close = Some(delay),
                ToxicKind::ResetPeer { after } => v.reset_after = Some(after),
                ToxicKind::LimitData { bytes } => v.limit_bytes = Some(bytes),
            }
        }
        v
    }
}

/// The toxics that apply to one way of one connection (later toxics of a kind win).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WayToxics {
    pub down: bool,
    pub blackhole: bool,
    pub latency: Option<(Duration, Duration)>,
    pub bytes_per_second: Option<u64>,
    pub slow_close: Option<Duration>,
    pub reset_after: Option<Duration>,
    pub limit_bytes: Option<u64>,
}

impl WayToxics {
    /// Nothing to do: the plain copy.
    pub fn is_clear(&self) -> bool {
        *self == WayToxics::default()
    }

    /// The delay of one chunk: `latency ± jitter`, uniform, never below zero.
    pub fn chunk_delay(&self, rng: &mut fastrand::Rng) -> Duration {
        match self.latency {
            None => Duration::ZERO,
            Some((l, j)) if j.is_zero() => l,
            Some((l, j)) => {
                let j = j.as_nanos() as i128;
                let offset = rng.i64(-(j as i64)..=(j as i64)) as i128;
                let ns = (l.as_nanos() as i128 + offset).max(0);
                Duration::from_nanos(ns as u64)
            }
        }
    }
}

/// Time that `bytes` take at `bytes_per_second`.
pub fn transmit_time(bytes: usize, bytes_per_second: u64) -> Duration {
    Duration::from_nanos(((bytes as u128 * 1_000_000_000) / bytes_per_second.max(1) as u128) as u64)
}

/// Largest piece written at once under a bandwidth limit: 20 ms worth, so the rate is smooth
/// at the scale a latency measurement sees, and at least one byte.
pub fn bandwidth_piece(bytes_per_second: u64) -> usize {
    ((bytes_per_second / 50) as usize).max(1)
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toxicity_is_a_share_of_connections_and_both_ways_agree() {
        let set = ToxicSet {
            generation: 7,
            toxics: vec![Toxic::new(ToxicKind::Blackhole, Direction::Both).with_toxicity(0.5)],
        };
        let hits = (0..10_000u64).filter(|s| set.applies(0, *s)).count();
        assert!((4_700..=5_300).contains(&hits), "{hits}");
        for seed in 0..100 {
            assert_eq!(
                set.view(Way::Upstream, seed).blackhole,
                set.view(Way::Downstream, seed).blackhole
            );
        }
        let none = ToxicSet {
            generation: 1,
            toxics: vec![Toxic::new(ToxicKind::Blackhole, Direction::Both).with_toxicity(0.0)],
        };
        assert!((0..1000).all(|s| !none.applies(0, s)));
    }

    #[test]
    fn directions_select_the_way() {
        let set = ToxicSet {
            generation: 1,
            toxics: vec![
                Toxic::new(
                    ToxicKind::Latency {
                        latency: Duration::from_millis(5),
                        jitter: Duration::ZERO,
                    },
                    Direction::Upstream,
                ),
                Toxic::new(ToxicKind::LimitData { bytes: 10 }, Direction::Downstream),
                Toxic::down().with_toxicity(0.0),
            ],
        };
        let up = set.view(Way::Upstream, 1);
        let down = set.view(Way::Downstream, 1);
        assert_eq!(up.latency, Some((Duration::from_millis(5), Duration::ZERO)));
        assert_eq!(up.limit_bytes, None);
        assert_eq!(down.latency, None);
        assert_eq!(down.limit_bytes, Some(10));
        assert!(!up.down && !set.refuses_all());
        assert!(ToxicSet::default().view(Way::Upstream, 3).is_clear());
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let v = WayToxics {
            latency: Some((Duration::from_millis(10), Duration::from_millis(4))),
            ..Default::default()
        };
        let mut rng = fastrand::Rng::with_seed(1);
        let ds: Vec<Duration> = (0..1000).map(|_| v.chunk_delay(&mut rng)).collect();
        assert!(ds
            .iter()
            .all(|d| *d >= Duration::from_millis(6) && *d <= Duration::from_millis(14)));
        assert!(ds.iter().any(|d| *d < Duration::from_millis(8)));
        assert!(ds.iter().any(|d| *d > Duration::from_millis(12)));
    }

    #[test]
    fn bandwidth_arithmetic() {
        assert_eq!(transmit_time(1000, 10_000), Duration::from_millis(100));
        assert_eq!(bandwidth_piece(10_000), 200);
        assert_eq!(bandwidth_piece(10), 1);
    }
}
