//! Sequence tracking for the pub/sub probe: which of the run's messages a subscriber
//! received, how often, and in which order. Pure bookkeeping: it parses and counts, it never
//! touches a socket.
//!
//! Memory is one bit per planned message and subscriber (bounded by the configuration), plus
//! an HDR histogram of the delivery latency.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Deserialize;

use crate::engine::recorder::new_histogram;

/// A set of message sequence numbers below a fixed capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqSet {
    words: Vec<u64>,
    capacity: u64,
}

impl SeqSet {
    pub fn new(capacity: u64) -> Self {
        SeqSet {
            words: vec![0; capacity.div_ceil(64) as usize],
            capacity,
        }
    }

    /// Adds `seq`; returns whether it was new. Numbers beyond the capacity are refused.
    pub fn insert(&mut self, seq: u64) -> Option<bool> {
        if seq >= self.capacity {
            return None;
        }
        let (w, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        let new = self.words[w] & bit == 0;
        self.words[w] |= bit;
        Some(new)
    }

    pub fn contains(&self, seq: u64) -> bool {
        seq < self.capacity && self.words[(seq / 64) as usize] & (1u64 << (seq % 64)) != 0
    }

    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Members of `self` that are also in `other`.
    pub fn common(&self, other: &SeqSet) -> u64 {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| u64::from((a & b).count_ones()))
            .sum()
    }

    /// Adds every member of `other`.
    pub fn union(&mut self, other: &SeqSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }
}

/// The message the probe publishes, as JSON: `{"plimsoll":"<run id>","seq":N,"sent_us":T}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Stamp {
    /// The run's id: messages of other runs or other publishers are not this run's.
    pub plimsoll: String,
    pub seq: u64,
    /// Send time, microseconds since the Unix epoch.
    pub sent_us: u64,
}

impl Stamp {
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"plimsoll":"{}","seq":{},"sent_us":{}}}"#,
            self.plimsoll, self.seq, self.sent_us
        )
    }

    /// Finds the stamp in a received text: the message itself, or an object nested (up to
    /// a few levels) in an envelope the service wrapped around it, or a JSON string holding it.
    pub fn find(text: &str) -> Option<Stamp> {
        if let Ok(s) = serde_json::from_str::<Stamp>(text) {
            return Some(s);
        }
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        find_in(&v, 3)
    }
}

fn find_in(v: &serde_json::Value, depth: u32) -> Option<Stamp> {
    match v {
        serde_json::Value::Object(m) if m.contains_key("plimsoll") => {
            serde_json::from_value(v.clone()).ok()
        }
        serde_json::Value::Object(m) if depth > 0 => m.values().find_map(|x| find_in(x, depth - 1)),
        serde_json::Value::Array(a) if depth > 0 => a.iter().find_map(|x| find_in(x, depth - 1)),
        serde_json::Value::String(s) if depth > 0 => serde_json::from_str::<Stamp>(s).ok(),
        _ => None,
    }
}

/// What one delivery was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// First time this subscriber got it, in order.
    Delivered,
    /// First time, but after a later message of the same publisher.
    OutOfOrder,
    /// Received before.
    Duplicate,
    /// A sequence number the run never planned.
    Foreign,
}

/// What one subscriber received of the run's messages.
#[derive(Debug, Clone)]
pub struct SequenceTracker {
    seen: SeqSet,
    /// Per publisher, the highest sequence number received: each publisher sends its own
    /// messages one after the other, so only within a publisher is the order defined.
    highest: Vec<Option<u64>>,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub latency: Histogram<u64>,
}

impl SequenceTracker {
    /// For `capacity` planned messages sent by `publishers` publishers (message `seq` by
    /// publisher `seq % publishers`).
    pub fn new(capacity: u64, publishers: u32) -> Self {
        SequenceTracker {
            seen: SeqSet::new(capacity),
            highest: vec![None; publishers.max(1) as usize],
            duplicates: 0,
            out_of_order: 0,
            latency: new_histogram(),
        }
    }

    /// Records a delivery of message `seq`, `latency` after it was sent.
    pub fn receive(&mut self, seq: u64, latency: Duration) -> Receipt {
        match self.seen.insert(seq) {
            None => Receipt::Foreign,
            Some(false) => {
                self.duplicates += 1;
                Receipt::Duplicate
            }
            Some(true) => {
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latency.saturating_record(us.max(1));
                let publisher = (seq % self.highest.len() as u64) as usize;
                let slot = &mut self.highest[publisher];
                match *slot {
                    Some(h) if seq < h => {
                        self.out_of_order += 1;
                        Receipt::OutOfOrder
                    }
                    _ => {
                        *slot = Some(seq);
                        Receipt::Delivered
                    }
                }
            }
        }
    }

    /// Distinct messages received so far.
    pub fn received(&self) -> u64 {
        self.seen.len()
    }

    /// Against the messages published successfully: (delivered, lost, unexpected).
    pub fn settle(&self, published: &SeqSet) -> (u64, u64, u64) {
        let delivered = self.seen.common(published);
        (
            delivered,
            published.len() - delivered,
            self.seen.len() - delivered,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(seqs: impl IntoIterator<Item = u64>, capacity: u64) -> SeqSet {
        let mut s = SeqSet::new(capacity);
        for q in seqs {
            s.insert(q);
        }
        s
    }

    #[test]
    fn in_order_deliveries_are_complete() {
        let mut t = SequenceTracker::new(10, 1);
        for seq in 0..10 {
            assert_eq!(t.receive(seq, Duration::from_millis(1)), Receipt::Delivered);
        }
        assert_eq!(t.settle(&published(0..10, 10)), (10, 0, 0));
        assert_eq!((t.duplicates, t.out_of_order), (0, 0));
        assert_eq!(t.latency.len(), 10);
    }

    #[test]
    fn duplicates_gaps_and_reordering_are_told_apart() {
        let ms = Duration::from_millis(2);
        let mut t = SequenceTracker::new(10, 1);
        assert_eq!(t.receive(0, ms), Receipt::Delivered);
        assert_eq!(t.receive(2, ms), Receipt::Delivered);
        assert_eq!(t.receive(1, ms), Receipt::OutOfOrder);
        assert_eq!(t.receive(2, ms), Receipt::Duplicate);
        assert_eq!(t.receive(5, ms), Receipt::Delivered);
        assert_eq!(t.receive(42, ms), Receipt::Foreign);
        // 3 and 4 never came; 6 was never published successfully but got through.
        assert_eq!(t.receive(6, ms), Receipt::Delivered);
        let (delivered, lost, unexpected) = t.settle(&published([0, 1, 2, 3, 4, 5], 10));
        assert_eq!((delivered, lost, unexpected), (4, 2, 1));
        assert_eq!((t.duplicates, t.out_of_order), (1, 1));
        // Duplicates add no latency sample.
        assert_eq!(t.latency.len(), 5);
    }

    #[test]
    fn order_is_judged_per_publisher() {
        let ms = Duration::from_millis(1);
        // Two publishers: even numbers from one, odd from the other. 3 before 2 is a race
        // between publishers, not a reordering; 1 after 3 is.
        let mut t = SequenceTracker::new(10, 2);
        assert_eq!(t.receive(0, ms), Receipt::Delivered);
        assert_eq!(t.receive(3, ms), Receipt::Delivered);
        assert_eq!(t.receive(2, ms), Receipt::Delivered);
        assert_eq!(t.receive(1, ms), Receipt::OutOfOrder);
    }

    #[test]
    fn stamps_are_found_in_envelopes() {
        let s = Stamp {
            plimsoll: "ab12".into(),
            seq: 7,
            sent_us: 1_700_000_000_000_000,
        };
        let json = s.to_json();
        assert_eq!(Stamp::find(&json), Some(s.clone()));
        let wrapped = format!(r#"{{"type":"event","data":{json}}}"#);
        assert_eq!(Stamp::find(&wrapped), Some(s.clone()));
        let as_string = serde_json::json!({ "payload": json }).to_string();
        assert_eq!(Stamp::find(&as_string), Some(s));
        assert_eq!(Stamp::find(r#"{"type":"heartbeat"}"#), None);
        assert_eq!(Stamp::find("not json"), None);
    }

    #[test]
    fn seq_sets_count_and_combine() {
        let mut a = published([1, 64, 65, 129], 130);
        let b = published([1, 2, 129], 130);
        assert_eq!(a.len(), 4);
        assert_eq!(a.common(&b), 2);
        assert_eq!(a.insert(130), None);
        a.union(&b);
        assert_eq!(a.len(), 5);
        assert!(a.contains(2) && !a.contains(3));
    }
}
