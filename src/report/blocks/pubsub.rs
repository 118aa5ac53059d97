//! The `pubsub` block: what was published, what each subscriber received, and its summary
//! line.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::report::LatencySummary;

/// Figures of a pub/sub delivery run (seed 003): what was published, what each subscriber
/// received of it, and how long a message took from its send to its delivery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PubsubStats {
    /// Subscriber connections asked for.
    pub subscribers: u32,
    /// Subscribers whose connection was open when publishing began.
    pub connected: u32,
    /// Messages published successfully (a failed publish is not expected anywhere).
    pub published: u64,
    /// Publishes that failed; counted in `stats.errors` too.
    pub publish_errors: u64,
    /// `published × subscribers`: deliveries a perfect channel makes.
    pub expected_deliveries: u64,
    /// Distinct expected messages received, all subscribers together.
    pub delivered: u64,
    /// `delivered / expected_deliveries`, 0 to 1.
    pub delivery_ratio: f64,
    /// Expected deliveries that never arrived (within the grace period).
    pub lost: u64,
    /// Messages received again by a subscriber that already had them.
    pub duplicates: u64,
    /// Messages received after a message published later than them.
    pub out_of_order: u64,
    /// Messages of this run received that were never reported published (the publish
    /// failed or timed out but got through); not counted as delivered.
    pub unexpected: u64,
    /// Text messages that were not this run's (other traffic on the channel); ignored.
    pub foreign: u64,
    /// From the publisher's send time (carried in the message) to the delivery.
    pub latency_ms: LatencySummary,
    /// Per subscriber, in connection order.
    pub per_subscriber: Vec<SubscriberStats>,
    /// The first subscriber error (connect, closed, protocol), for the person on call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_error: Option<String>,
}

/// What one subscriber received.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscriberStats {
    /// Index, from 0.
    pub subscriber: u32,
    /// Whether its connection was open when publishing began.
    pub connected: bool,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// `delivered / published`, 0 to 1.
    pub delivery_ratio: f64,
}

/// One line of a pub/sub run's deliveries.
pub(super) fn summary(p: &PubsubStats) -> String {
    let mut line = format!(
        "{} message(s) to {}/{} subscriber(s): {} of {} delivered ({:.3}%), {} lost, {} \
         duplicate(s), {} out of order; delivery p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        p.published,
        p.connected,
        p.subscribers,
        p.delivered,
        p.expected_deliveries,
        p.delivery_ratio * 100.0,
        p.lost,
        p.duplicates,
        p.out_of_order,
        p.latency_ms.p50,
        p.latency_ms.p95,
        p.latency_ms.p99
    );
    if let Some(e) = &p.subscriber_error {
        let _ = write!(line, "\n  subscriber: {e}");
    }
    line
}
