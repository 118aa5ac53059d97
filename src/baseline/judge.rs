//! Between a finished run and the store: what of a result document is recorded (its headline
//! figures and configuration fingerprint), and the judgement of those figures against the
//! probe's stored series, which becomes the document's `regression` block and may raise its
//! grade (`[baseline].grade_on_regression`).
//!
//! Both `plimsoll once` and the daemon's scheduler call [`judge_run`] once per finished run.
//! It must not delay a schedule: every store operation is bounded by `[baseline].timeout`,
//! and a store that cannot take the run spools it (nothing is lost; the run is then simply
//! not judged). It names no metric: telemetry reads the block it produces.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha1::{Digest, Sha1};

use super::{
    histogram, DetectorSettings, FigureSpec, PercentageComparison, Recorded, RegressionDetector,
    RegressionState, Retention, RunRecord, Store, StoreError, StoreOptions, Transition,
    DEFAULT_FILE,
};
use crate::config::{BaselineConfig, Config, ProbeConfig};
use crate::report::{ProbeResult, RegressionBlock, RegressionFigure};
use crate::verdict::Grade;

/// The state directory: `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else
/// `$XDG_STATE_HOME/plimsoll`, else `~/.local/state/plimsoll`, else `plimsoll-state` in the
/// working directory.
pub fn state_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("STATE_DIRECTORY") {
        // systemd may list several, separated by colons: the first is ours.
        let first = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        return PathBuf::from(first);
    }
    if let Some(d) = env("XDG_STATE_HOME") {
        return d.join("plimsoll");
    }
    if let Some(h) = env("HOME") {
        return h.join(".local/state/plimsoll");
    }
    PathBuf::from("plimsoll-state")
}

/// The store a configuration names: `[baseline].store`, or the default SQLite file.
pub fn store_location(cfg: &BaselineConfig) -> String {
    match &cfg.store {
        Some(s) => s.clone(),
        None => state_dir().join(DEFAULT_FILE).display().to_string(),
    }
}

/// The store's opening options from `[baseline]`.
pub fn store_options(cfg: &BaselineConfig) -> StoreOptions {
    StoreOptions {
        spool_dir: cfg.spool_dir.as_ref().map(PathBuf::from),
        retention: Retention {
            max_runs: cfg.retention_runs,
            max_age: cfg.retention_age.as_duration(),
        },
        timeout: cfg.timeout.as_duration(),
    }
}

/// Opens the store of `[baseline]` (applying its migrations).
pub async fn open_store(cfg: &BaselineConfig) -> Result<Store, StoreError> {
    Store::open(&store_location(cfg), store_options(cfg)).await
}

/// The detector's settings from `[baseline.detector]`.
pub fn detector_settings(cfg: &BaselineConfig) -> DetectorSettings {
    let d = &cfg.detector;
    DetectorSettings {
        window: d.window as usize,
        min_reference: d.min_runs as usize,
        slack: d.slack,
        threshold: d.threshold,
        min_shift: d.min_shift,
        // A short window cannot hold runs back for long.
        guard: DetectorSettings::default().guard.min(d.window as usize / 2),
        ..DetectorSettings::default()
    }
}

/// A digest of what a probe measures: its kind's table and its target's URL. The schedule,
/// thresholds and name are left out: changing when a probe runs or how it is graded does not
/// change its figures, so it must not start a new series.
pub fn fingerprint(config: &Config, probe: &ProbeConfig) -> String {
    let target = config.target_of(probe).map(|t| t.url.as_str());
    let text = format!("{:?}|{:?}|{:?}", probe.spec, target, probe.target_rps);
    let digest = Sha1::digest(text.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The headline figures of a result document, by name: latency percentiles, throughput and
/// error rate, and each kind's own.
pub fn headline_figures(r: &ProbeResult) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    let mut put = |name: &str, v: f64| {
        if v.is_finite() {
            out.push((name.to_string(), v));
        }
    };
    if let Some(s) = &r.stats {
        // A run without a successful request has no latency worth a baseline.
        if s.requests > s.errors {
            put("p50", s.latency_ms.p50);
            put("p95", s.latency_ms.p95);
            put("p99", s.latency_ms.p99);
        }
        put("rps", s.rps);
        put("error_rate", s.error_rate);
    }
    if let Some(race) = r.race() {
        put("win_rate", race.win_rate);
        put("race_rate", race.race_rate);
    }
    if let Some(p) = r.pubsub() {
        put("delivery_ratio", p.delivery_ratio);
    }
    if let Some(c) = r.capacity() {
        if !c.search.stopped_early && !c.steps.is_empty() {
            put("breaking_point_rps", c.breaking_point_rps);
        }
    }
    if let Some(f) = r.fault() {
        // One fault per probe is the common case; several get the fault's name.
        let single = f.faults.len() == 1;
        for x in &f.faults {
            if let Some(v) = x.recovery_s {
                if single {
                    put("recovery_s", v);
                } else {
                    put(&format!("recovery_s.{}", x.name), v);
                }
            }
        }
    }
    out
}

/// The record the store keeps of a run.
pub fn record_of(r: &ProbeResult, fingerprint: &str) -> RunRecord {
    let started_at = r
        .detail
        .started
        .map(DateTime::<Utc>::from)
        .or_else(|| {
            DateTime::parse_from_rfc3339(&r.started_at)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
        .unwrap_or_else(Utc::now);
    RunRecord {
        probe: r.probe.clone(),
        started_at,
        fingerprint: fingerprint.to_string(),
        grade: r.grade.as_str().to_string(),
        document: serde_json::to_value(r).unwrap_or(serde_json::Value::Null),
        figures: headline_figures(r),
        histogram: latency_histogram(r),
    }
}

/// The run's merged latency histogram in the stored format, when the run has latency figures
/// (at least one successful request). A histogram that does not encode is left out: the
/// run's figures matter more than its histogram.
fn latency_histogram(r: &ProbeResult) -> Option<Vec<u8>> {
    let h = r.detail.latency.as_ref().filter(|h| !h.is_empty())?;
    match histogram::encode(h) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(probe = %r.probe, "baseline: {e}; the run is stored without it");
            None
        }
    }
}

/// What became of a run at the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Judged {
    /// Not recorded: a guardrail refused the run, so it measured nothing.
    Skipped,
    /// Stored and judged (the block is in the document).
    Judged { run_id: i64 },
    /// Stored; this probe is not judged (`[baseline.probes.NAME].judge = false`).
    Stored { run_id: i64 },
    /// The store could not take it: it waits in the spool and is not judged.
    Spooled { cause: String },
    /// Neither stored nor spooled: the spool could not be written either.
    Lost { cause: String },
}

/// Records `r` in `store`, judges its figures against the probe's series, puts the
/// `regression` block into `r` and raises its grade as `[baseline]` says.
pub async fn judge_run(
    store: &Store,
    config: &Config,
    probe: &ProbeConfig,
    r: &mut ProbeResult,
) -> Judged {
    let cfg = &config.baseline;
    // A refused run measured nothing; it would only pollute the series.
    if r.refused.is_some() {
        return Judged::Skipped;
    }
    let fp = fingerprint(config, probe);
    let record = record_of(r, &fp);
    let run_id = match store.record(&record).await {
        Ok(Recorded::Stored { run_id }) => run_id,
        Ok(Recorded::Spooled { cause, .. }) => {
            r.notes.push(format!(
                "baseline: the store did not answer ({cause}); the run waits in its spool and was not judged"
            ));
            return Judged::Spooled { cause };
        }
        Err(e) => {
            tracing::error!(probe = %r.probe, "baseline: the run could not be stored nor spooled: {e}");
            return Judged::Lost {
                cause: e.to_string(),
            };
        }
    };
    if !cfg.judges(&r.probe) {
        return Judged::Stored { run_id };
    }
    // One bound for the whole judgement, not one per figure: a store that answers slowly
    // must not hold the run for a timeout per figure.
    let judged = tokio::time::timeout(
        cfg.timeout.as_duration(),
        judge_figures(store, cfg, &r.probe, &fp, &record.figures),
    )
    .await
    .unwrap_or_else(|_| Err(StoreError::Timeout(cfg.timeout.as_duration())));
    match judged {
        Ok(block) => {
            apply(cfg, r, block);
            Judged::Judged { run_id }
        }
        Err(e) => {
            r.notes
                .push(format!("baseline: the run was stored but not judged: {e}"));
            Judged::Stored { run_id }
        }
    }
}

/// The judgement of the latest stored run's figures.
async fn judge_figures(
    store: &Store,
    cfg: &BaselineConfig,
    probe: &str,
    fp: &str,
    figures: &[(String, f64)],
) -> Result<RegressionBlock, StoreError> {
    let wanted = cfg.figures_of(probe);
    let chosen = figures
        .iter()
        .filter(|(n, _)| wanted.is_empty() || wanted.iter().any(|w| w == n));
    let settings = detector_settings(cfg);
    let mut block = RegressionBlock {
        mode: cfg.mode.clone(),
        figures: Default::default(),
        min_runs: settings.min_reference as u64,
    };
    if cfg.mode == "percentage" {
        let pinned = store.pinned(probe, fp).await?;
        for (name, value) in chosen {
            let spec = FigureSpec::of_figure(name);
            let base = pinned
                .as_ref()
                .and_then(|p| p.figures.iter().find(|(n, _)| n == name))
                .map(|(_, v)| *v);
            let figure = match base {
                Some(b) => {
                    let tolerance = cfg.percentage_tolerance;
                    let c = PercentageComparison::compare(spec, b, *value, tolerance);
                    // This run is the newest of the series; the one before it says whether
                    // this run opened or cleared the regression.
                    let series = store.figures(probe, name, fp, 2).await?;
                    let before = match series.as_slice() {
                        [previous, _latest] => Some(
                            PercentageComparison::compare(spec, b, previous.value, tolerance).state,
                        ),
                        _ => None,
                    };
                    RegressionFigure {
                        baseline: Some(b),
                        current: *value,
                        shift_ratio: Some(c.change_ratio),
                        state: c.state.as_str().to_string(),
                        transition: before
                            .and_then(|s| percentage_transition(s, c.state))
                            .map(transition_name),
                        runs: 1,
                        ..Default::default()
                    }
                }
                None => RegressionFigure {
                    current: *value,
                    state: "warmup".into(),
                    runs: 1,
                    ..Default::default()
                },
            };
            block.figures.insert(name.clone(), figure);
        }
        return Ok(block);
    }
    // The whole kept series, so a restart of the daemon reaches the same state.
    let limit = cfg.retention_runs.max(cfg.detector.window);
    for (name, _) in chosen {
        let series = store.figures(probe, name, fp, limit).await?;
        let spec = FigureSpec::of_figure(name);
        let Some(state) =
            RegressionDetector::replay(&settings, spec, series.iter().map(|p| p.value))
        else {
            continue;
        };
        block.figures.insert(
            name.clone(),
            RegressionFigure {
                baseline: state.baseline,
                current: state.current,
                shift_ratio: state.shift_ratio,
                statistic: Some(state.statistic),
                threshold: Some(state.threshold),
                state: state.state.as_str().to_string(),
                transition: state.transition.map(transition_name),
                runs: state.runs as u64,
            },
        );
    }
    Ok(block)
}

/// The document's word for a transition.
fn transition_name(t: Transition) -> String {
    match t {
        Transition::Opened => "opened",
        Transition::Cleared => "cleared",
    }
    .to_string()
}

/// What a run in `percentage` mode did to the regression, from the previous run's state to
/// its own: there is no hysteresis in this mode, so every crossing of the tolerance is one.
fn percentage_transition(before: RegressionState, now: RegressionState) -> Option<Transition> {
    match (before, now) {
        (RegressionState::Open, RegressionState::Ok) => Some(Transition::Cleared),
        (RegressionState::Ok, RegressionState::Open) => Some(Transition::Opened),
        _ => None,
    }
}

/// Puts the block into the document and raises the grade of a regressed run.
fn apply(cfg: &BaselineConfig, r: &mut ProbeResult, block: RegressionBlock) {
    let least = match cfg.grade_on_regression_of(&r.probe) {
        "critical" => Some(Grade::Critical),
        "warning" => Some(Grade::Warning),
        _ => None,
    };
    let open: Vec<String> = block
        .open()
        .map(|(name, f)| {
            let shift = f
                .shift_ratio
                .map(|s| format!(" ({:+.0} %)", s * 100.0))
                .unwrap_or_default();
            let base = f.baseline.map(|b| format!("{b:.3}")).unwrap_or_default();
            format!(
                "{name} {:.3} against a baseline of {base}{shift}",
                f.current
            )
        })
        .collect();
    if !open.is_empty() {
        let why = format!("regression: {}", open.join(", "));
        if let Some(g) = least.filter(|g| *g > r.grade) {
            r.grade = g;
            r.grade_reason = format!("{g}: {why}");
        }
        r.notes.push(why);
    }
    r.regression = Some(block);
}

/// Bound for opening the store at start: the store's own timeout, at least a few seconds
/// (PostgreSQL's connect and the migrations).
pub fn open_bound(cfg: &BaselineConfig) -> Duration {
    cfg.timeout.as_duration().max(Duration::from_secs(5)) * 2
}
