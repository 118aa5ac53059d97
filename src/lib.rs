//! Plimsoll keeps measuring how much load a service can carry before it breaks.
//!
//! A tour of the crate, in the order a probe run travels through it:
//!
//! - [`config`] reads the TOML file and `PLIMSOLL__…` environment overrides into typed,
//!   validated structs; every problem is reported with its path.
//! - [`probe`] holds one module per probe kind behind one trait, and the registry that maps a
//!   kind's table to it.
//! - [`engine`] generates load: arrival plans (open, closed, burst), the HTTP hot path and
//!   latency recording in per-worker HDR histograms.
//! - [`stats`] holds the measured figures (counts, error ratios, latency percentiles) that the
//!   verdict grades and the report carries.
//! - [`verdict`] turns measured numbers into grades with the seed documents' thresholds.
//! - [`report`] writes the JSON result document and the terminal summary.
//! - [`telemetry`] names and emits every metric (Prometheus exposition).
//! - [`fault`] is the built-in fault proxy (toxics on TCP listeners) and the external fault
//!   actions, each cleared by a guard whatever happens (`plimsoll proxy`).
//! - [`import`] converts other tools' scripts (Artillery) into Plimsoll configurations.
//! - [`daemon`] schedules probes, serves `/metrics` and the status endpoints, and handles
//!   signals and the service lifecycle (`plimsoll run`, `plimsoll demo`).
//!
//! The binary (`src/main.rs`) only parses the command line and maps outcomes to exit codes;
//! the commands themselves live in [`cli`].

pub mod baseline;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod exit;
pub mod fault;
pub mod import;
pub mod probe;
pub mod report;
pub mod stats;
pub mod telemetry;
pub mod verdict;
