//! `plimsoll baseline list | show | compare | accept | export`: the run store and the
//! regression detector's state, read from the store `[baseline]` names (or the default file).
//!
//! Read-only except `accept`, which starts a probe's series again after an intended change.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{print_config_errors, stdout, Exit};
use crate::baseline::{self, FigureSpec, RegressionDetector, RunSummary, Store};
use crate::config::{self, BaselineConfig};
use crate::report::LatencySummary;

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Configuration file whose `[baseline]` names the store and the detector's settings.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// The store itself (`postgres://…`, `sqlite:PATH` or a path), replacing the
    /// configuration's.
    #[arg(long, global = true)]
    pub store: Option<String>,
    #[command(subcommand)]
    pub command: BaselineCommand,
}

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Every probe in the store, with its runs and its latest run.
    List,
    /// A probe's latest runs and the detector's state of each figure.
    Show {
        probe: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// How many of the latest runs to list.
        #[arg(long, default_value_t = 10)]
        runs: u32,
    },
    /// Baseline, current and change % of every figure: the detector's baseline against the
    /// latest run, or one run against another.
    Compare {
        probe: String,
        /// Run id of the baseline side.
        #[arg(long, requires = "to")]
        from: Option<i64>,
        /// Run id of the current side.
        #[arg(long, requires = "from")]
        to: Option<i64>,
    },
    /// Accepts the probe's current level after an intended change: its series starts again
    /// now, and its latest run becomes the percentage mode's pinned baseline.
    Accept {
        probe: String,
        /// Why (kept with the accept).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Every stored run as JSON lines (run, figures, result document), oldest first.
    Export {
        /// Only this probe's runs.
        #[arg(long)]
        probe: Option<String>,
    },
}

pub fn baseline(a: BaselineArgs) -> Exit {
    let mut cfg = match &a.config {
        Some(path) => match config::load_file_without_secrets(path) {
            Ok(c) => c.baseline,
            Err(e) => {
                print_config_errors(path, &e);
                return Exit::Usage;
            }
        },
        None => BaselineConfig::default(),
    };
    if let Some(s) = &a.store {
        cfg.store = Some(s.clone());
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return Exit::CannotStart;
        }
    };
    rt.block_on(async {
        let store = match baseline::open_store(&cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return Exit::CannotStart;
            }
        };
        let out = command(&store, &cfg, a.command).await;
        store.close().await;
        match out {
            Ok(text) => {
                stdout(&text);
                Exit::Success
            }
            Err(Failure::Usage(m)) => {
                eprintln!("{m}");
                Exit::Usage
            }
            Err(Failure::Store(e)) => {
                eprintln!("{e}");
                Exit::CannotStart
            }
        }
    })
}

enum Failure {
    Usage(String),
    Store(baseline::StoreError),
}

impl From<baseline::StoreError> for Failure {
    fn from(e: baseline::StoreError) -> Self {
        Failure::Store(e)
    }
}

async fn command(
    store: &Store,
    cfg: &BaselineConfig,
    c: BaselineCommand,
) -> Result<String, Failure> {
    match c {
        BaselineCommand::List => list(store).await,
        BaselineCommand::Show { probe, json, runs } => show(store, cfg, &probe, json, runs).await,
        BaselineCommand::Compare { probe, from, to } => {
            compare(store, cfg, &probe, from.zip(to)).await
        }
        BaselineCommand::Accept { probe, note } => {
            latest(store, &probe).await?;
            let a = store.accept(&probe, None, &note).await?;
            Ok(format!(
                "accepted {probe}: its series starts again at {}{}\n",
                a.from.to_rfc3339(),
                a.pinned_run
                    .map(|id| format!("; run {id} is the pinned baseline"))
                    .unwrap_or_default()
            ))
        }
        BaselineCommand::Export { probe } => export(store, probe.as_deref()).await,
    }
}

async fn list(store: &Store) -> Result<String, Failure> {
    let probes = store.probes().await?;
    let mut out = format!("store: {}\n", store.url());
    if probes.is_empty() {
        out.push_str("no runs stored yet\n");
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:<28} {:>6}  {:<20}  {:<20}  {:<9}  fingerprint",
        "probe", "runs", "first run", "last run", "grade"
    );
    for p in probes {
        let _ = writeln!(
            out,
            "{:<28} {:>6}  {:<20}  {:<20}  {:<9}  {}",
            crate::report::terminal::escape_name(&p.probe),
            p.runs,
            p.first_started_at.format("%Y-%m-%dT%H:%M:%SZ"),
            p.last.started_at.format("%Y-%m-%dT%H:%M:%SZ"),
            p.last.grade,
            p.last.fingerprint
        );
    }
    Ok(out)
}

/// The probe's latest run, or a usage error naming the probes the store knows.
async fn latest(store: &Store, probe: &str) -> Result<RunSummary, Failure> {
    if let Some(r) = store.runs(probe, 1).await?.into_iter().next() {
        return Ok(r);
    }
    let known: Vec<String> = store.probes().await?.into_iter().map(|p| p.probe).collect();
    Err(Failure::Usage(format!(
        "no runs of a probe named {probe:?} in {} (known: {})",
        store.url(),
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )))
}

/// The detector's state of every figure of the probe's latest configuration.
async fn states(
    store: &Store,
    cfg: &BaselineConfig,
    probe: &str,
    fingerprint: &str,
) -> Result<BTreeMap<String, baseline::FigureState>, Failure> {
    let settings = baseline::detector_settings(cfg);
    let limit = cfg.retention_runs.max(cfg.detector.window);
    let mut out = BTreeMap::new();
    for name in store.figure_names(probe, fingerprint).await? {
        let series = store.figures(probe, &name, fingerprint, limit).await?;
        let spec = FigureSpec::of_figure(&name);
        if let Some(s) = RegressionDetector::replay(&settings, spec, series.iter().map(|p| p.value))
        {
            out.insert(name, s);
        }
    }
    Ok(out)
}

/// The latency percentiles recomputed over the stored histograms of the probe's series (the
/// runs the detector judges), and how many runs they merge; `None` when no run of the series
/// kept one (kinds without HTTP latency). A stored histogram that does not decode is reported
/// and left out of the merge rather than failing the command.
async fn merged_latency(
    store: &Store,
    cfg: &BaselineConfig,
    probe: &str,
    fingerprint: &str,
) -> Result<Option<(usize, LatencySummary)>, Failure> {
    let limit = cfg.retention_runs.max(cfg.detector.window);
    let stored = store.histograms(probe, fingerprint, limit).await?;
    let mut merged: Option<hdrhistogram::Histogram<u64>> = None;
    let mut runs = 0;
    for bytes in &stored {
        let h = match baseline::histogram::decode(bytes) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("{probe}: a stored run's {e}; left out of the merged latency");
                continue;
            }
        };
        let added = match &mut merged {
            None => {
                merged = Some(h);
                Ok(())
            }
            Some(m) => m.add(&h),
        };
        match added {
            Ok(()) => runs += 1,
            Err(e) => eprintln!("{probe}: a stored run's latency histogram does not merge ({e:?})"),
        }
    }
    Ok(merged
        .filter(|h| !h.is_empty())
        .map(|h| (runs, LatencySummary::from_micros(&h))))
}

async fn show(
    store: &Store,
    cfg: &BaselineConfig,
    probe: &str,
    as_json: bool,
    runs: u32,
) -> Result<String, Failure> {
    let last = latest(store, probe).await?;
    let recent = store.runs(probe, runs).await?;
    let figures = states(store, cfg, probe, &last.fingerprint).await?;
    let accepted = store.acceptance(probe).await?;
    let latency = merged_latency(store, cfg, probe, &last.fingerprint).await?;
    if as_json {
        let doc = json!({
            "probe": probe,
            "fingerprint": last.fingerprint,
            "accepted": accepted.as_ref().map(|a| json!({
                "from": a.from.to_rfc3339(),
                "pinned_run": a.pinned_run,
                "note": a.note,
            })),
            "runs": recent.iter().map(|r| json!({
                "id": r.id,
                "started_at": r.started_at.to_rfc3339(),
                "grade": r.grade,
                "fingerprint": r.fingerprint,
            })).collect::<Vec<_>>(),
            "figures": figures.iter().map(|(n, s)| (n.clone(), json!({
                "baseline": s.baseline,
                "current": s.current,
                "latest": s.latest,
                "shift_ratio": s.shift_ratio,
                "statistic": s.statistic,
                "threshold": s.threshold,
                "state": s.state.as_str(),
                "runs": s.runs,
            }))).collect::<serde_json::Map<_, _>>(),
            "latency_ms": latency.as_ref().map(|(_, l)| l),
            "latency_runs": latency.as_ref().map_or(0, |(n, _)| *n),
        });
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).expect("JSON serializes")
        ));
    }
    let mut out = format!(
        "{} (configuration {}){}\n\n",
        crate::report::terminal::escape_name(probe),
        last.fingerprint,
        accepted
            .map(|a| format!(", series since the accept of {}", a.from.to_rfc3339()))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "{:<20} {:>12} {:>12} {:>9} {:>10}  {:<7} {:>5}",
        "figure", "baseline", "current", "shift", "statistic", "state", "runs"
    );
    for (name, s) in &figures {
        let _ = writeln!(
            out,
            "{:<20} {:>12} {:>12} {:>9} {:>10.2}  {:<7} {:>5}",
            name,
            s.baseline.map(number).unwrap_or_else(|| "-".into()),
            number(s.current),
            s.shift_ratio.map(percent).unwrap_or_else(|| "-".into()),
            s.statistic,
            s.state.as_str(),
            s.runs
        );
    }
    if let Some((n, l)) = &latency {
        let _ = writeln!(
            out,
            "\nlatency over the {n} stored run(s) of the series: p50 {:.2}  p95 {:.2}  p99 {:.2}  \
             p99.9 {:.2}  max {:.2} ms",
            l.p50, l.p95, l.p99, l.p999, l.max
        );
    }
    let _ = writeln!(out, "\nlatest runs:");
    for r in recent {
        let _ = writeln!(
            out,
            "  {:>6}  {}  {:<9} {}",
            r.id,
            r.started_at.format("%Y-%m-%dT%H:%M:%SZ"),
            r.grade,
            r.fingerprint
        );
    }
    Ok(out)
}

async fn compare(
    store: &Store,
    cfg: &BaselineConfig,
    probe: &str,
    runs: Option<(i64, i64)>,
) -> Result<String, Failure> {
    let last = latest(store, probe).await?;
    // (figure, baseline, current)
    let (title, rows): (String, Vec<(String, f64, f64)>) = match runs {
        Some((from, to)) => {
            let run = |id: i64| async move {
                match store.run(id).await? {
                    Some(r) if r.summary.probe == probe => Ok(r),
                    _ => Err(Failure::Usage(format!("no run {id} of {probe:?}"))),
                }
            };
            let (a, b) = (run(from).await?, run(to).await?);
            let rows = a
                .figures
                .iter()
                .filter_map(|(n, va)| {
                    let vb = b.figures.iter().find(|(m, _)| m == n)?.1;
                    Some((n.clone(), *va, vb))
                })
                .collect();
            (format!("run {from} (baseline) against run {to}"), rows)
        }
        None => {
            let figures = states(store, cfg, probe, &last.fingerprint).await?;
            let rows = figures
                .into_iter()
                .filter_map(|(n, s)| Some((n, s.baseline?, s.latest)))
                .collect();
            (
                format!("the rolling baseline against the latest run ({})", last.id),
                rows,
            )
        }
    };
    let mut out = format!(
        "{}: {title}\n\n",
        crate::report::terminal::escape_name(probe)
    );
    if rows.is_empty() {
        out.push_str(
            "nothing to compare yet (a new series is judged after [baseline.detector].min_runs runs)\n",
        );
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:<20} {:>12} {:>12} {:>9}  verdict",
        "figure", "baseline", "current", "change"
    );
    for (name, b, c) in rows {
        let spec = FigureSpec::of_figure(&name);
        let cmp = baseline::PercentageComparison::compare(spec, b, c, cfg.percentage_tolerance);
        let verdict = if cmp.improvement_ratio.abs() < 0.005 {
            "same".to_string()
        } else if cmp.improvement_ratio > 0.0 {
            format!("better by {:.1} %", cmp.improvement_ratio * 100.0)
        } else {
            format!("worse by {:.1} %", -cmp.improvement_ratio * 100.0)
        };
        let _ = writeln!(
            out,
            "{:<20} {:>12} {:>12} {:>9}  {verdict}",
            name,
            number(b),
            number(c),
            percent(cmp.change_ratio)
        );
    }
    Ok(out)
}

async fn export(store: &Store, only: Option<&str>) -> Result<String, Failure> {
    let mut out = String::new();
    let probes = store.probes().await?;
    if let Some(p) = only {
        if !probes.iter().any(|x| x.probe == p) {
            latest(store, p).await?;
        }
    }
    for p in probes.iter().filter(|p| only.is_none_or(|o| o == p.probe)) {
        let mut runs = store.runs(&p.probe, u32::MAX).await?;
        runs.reverse();
        for r in runs {
            let Some(run) = store.run(r.id).await? else {
                continue;
            };
            let line = json!({
                "id": r.id,
                "probe": r.probe,
                "started_at": r.started_at.to_rfc3339(),
                "fingerprint": r.fingerprint,
                "grade": r.grade,
                "figures": run.figures.iter().cloned().collect::<BTreeMap<_, _>>(),
                "document": run.document,
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    Ok(out)
}

fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn percent(r: f64) -> String {
    format!("{:+.1} %", r * 100.0)
}
