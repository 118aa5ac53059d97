//! Each kind's own block of figures in the result document, with its lines in the terminal
//! summary: one file per block, so a new kind's block is a new file here, a variant of
//! [`KindBlock`] and an arm of [`KindBlock::summary`], and nothing in other kinds' code.

mod capacity;
mod fault;
mod pubsub;
mod race;

pub use capacity::*;
pub use fault::*;
pub use pubsub::*;
pub use race::*;

use serde::{Deserialize, Serialize};

/// A kind's own block of figures. Serialized under the variant's name beside `stats`
/// (`"race": {…}`), so a new block is a new variant here and nothing in other kinds' code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindBlock {
    /// Figures of a `race` probe.
    Race(RaceStats),
    /// Figures of a `pubsub` probe: deliveries, beside `stats` (which counts the publishes).
    Pubsub(PubsubStats),
    /// Figures of a `capacity` probe: the breaking point, the knee and every step measured.
    Capacity(CapacityStats),
    /// Figures of a `fault` probe: each fault's timeline of windows and its recovery.
    Fault(FaultStats),
}

impl KindBlock {
    /// The block's lines in the terminal summary, under the run's figures.
    pub fn summary(&self) -> String {
        match self {
            KindBlock::Race(r) => race::summary(r),
            KindBlock::Pubsub(p) => pubsub::summary(p),
            KindBlock::Capacity(c) => capacity::summary(c),
            KindBlock::Fault(f) => fault::summary(f),
        }
    }
}
