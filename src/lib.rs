//! Plimsoll (skeleton).
pub mod engine;
