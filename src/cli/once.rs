//! `plimsoll once`: runs the configured probes now, prints a summary, writes the result
//! documents, and exits with the worst grade.

use std::sync::atomic::Ordering;

use super::progress::{ceiling_notice, colour_on, interrupt_flag, run_with_progress, Telemetry};
use super::{print_config_errors, stdout, Exit, OnceArgs};
use crate::baseline::{self, Judged, Store};
use crate::config::{self, ProbeConfig};
use crate::probe::guard;
use crate::report::{self, ProbeResult};

/// The baseline store of one `once` command, on a small runtime of its own.
struct OnceBaseline {
    rt: tokio::runtime::Runtime,
    store: Store,
}

impl OnceBaseline {
    /// Opens the store `[baseline]` names. A store named in the configuration that cannot be
    /// opened stops the command (exit 4); the default file that cannot be opened (no state
    /// directory, read-only home) only costs the judgement, with a warning.
    fn open(cfg: &config::Config) -> Result<Option<OnceBaseline>, Exit> {
        if !cfg.baseline.enabled {
            return Ok(None);
        }
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("cannot start the baseline store's runtime: {e}");
                return Err(Exit::CannotStart);
            }
        };
        let bound = baseline::open_bound(&cfg.baseline);
        let opened = rt.block_on(async {
            tokio::time::timeout(bound, baseline::open_store(&cfg.baseline)).await
        });
        let err = match opened {
            Ok(Ok(store)) => return Ok(Some(OnceBaseline { rt, store })),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "baseline store {}: no answer within {bound:?}",
                baseline::store_location(&cfg.baseline)
            ),
        };
        if cfg.baseline.store.is_some() {
            eprintln!("baseline.store: {err}");
            Err(Exit::CannotStart)
        } else {
            eprintln!("warning: runs are not judged against a baseline: {err}");
            Ok(None)
        }
    }

    fn judge(&self, cfg: &config::Config, probe: &ProbeConfig, r: &mut ProbeResult) {
        let judged = self
            .rt
            .block_on(baseline::judge_run(&self.store, cfg, probe, r));
        if let Judged::Lost { cause } = judged {
            eprintln!("{}: the run could not be stored: {cause}", r.probe);
        }
    }
}

/// The plan of each probe, as `--dry-run` prints it: nothing is sent.
fn dry_run(cfg: &config::Config, probes: &[&ProbeConfig]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("dry run: nothing is sent\n");
    for p in probes {
        let plan = guard::plan(cfg, p);
        let opt = |v: Option<String>| v.unwrap_or_else(|| "depends on the target".into());
        let _ = writeln!(
            out,
            "\n{} ({}):\n  requests:  {}\n  peak rate: {}\n  duration:  {}\n  hosts:     {}",
            p.name,
            p.kind(),
            opt(plan.sends.requests.map(|n| format!("{n}"))),
            opt(plan.sends.peak_rps.map(|r| format!("{r} req/s"))),
            opt(plan
                .sends
                .duration
                .map(|d| format!("{:.1} s", d.as_secs_f64()))),
            if plan.hosts.is_empty() {
                "none (not HTTP)".to_string()
            } else {
                plan.hosts.join(", ")
            }
        );
        for g in plan.guardrails {
            let _ = writeln!(out, "  guardrail: {g}");
        }
    }
    out
}

pub fn once(a: OnceArgs) -> Exit {
    let cfg = match config::load_file(&a.config) {
        Ok(c) => c,
        Err(e) => {
            print_config_errors(&a.config, &e);
            return Exit::Usage;
        }
    };
    for name in &a.probes {
        if !cfg.probe.iter().any(|p| &p.name == name) {
            let known: Vec<&str> = cfg.probe.iter().map(|p| p.name.as_str()).collect();
            eprintln!(
                "no probe named {name:?} in {} (known: {})",
                a.config.display(),
                known.join(", ")
            );
            return Exit::Usage;
        }
    }
    let selected: Vec<&ProbeConfig> = cfg
        .probe
        .iter()
        .filter(|p| a.probes.is_empty() || a.probes.contains(&p.name))
        .collect();
    if selected.is_empty() {
        eprintln!("{}: no probe to run", a.config.display());
        return Exit::Usage;
    }
    if a.dry_run {
        stdout(&dry_run(&cfg, &selected));
        return Exit::Success;
    }
    // OTLP as the configuration or the standard `OTEL_EXPORTER_OTLP_*` variables ask; flushed
    // before the command exits.
    let store = match OnceBaseline::open(&cfg) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let telemetry = Telemetry::with_otlp(&cfg.otlp);
    let stop = interrupt_flag();
    let mut results = Vec::new();
    for p in selected {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(n) = ceiling_notice(p) {
            eprintln!("{n}");
        }
        results.push(run_with_progress(&cfg, p, &stop, &telemetry, |r| {
            if let Some(b) = &store {
                b.judge(&cfg, p, r);
            }
        }));
    }
    telemetry.shutdown_otlp();
    if let Some(b) = store {
        b.rt.block_on(b.store.close());
    }
    // `--out -` puts the documents on stdout, so the summary moves to stderr.
    let to_stdout = a.out.as_deref() == Some(std::path::Path::new("-"));
    if to_stdout {
        let summary = report::summary::render_with(&results, colour_on(&std::io::stderr()));
        eprint!("{summary}");
    } else {
        stdout(&report::summary::render_with(
            &results,
            colour_on(&std::io::stdout()),
        ));
    }
    let mut code = Exit::worst(results.iter().map(|r| r.grade));
    if to_stdout {
        let mut text = String::new();
        for r in &results {
            text.push_str(&serde_json::to_string(r).expect("a result document serializes"));
            text.push('\n');
        }
        stdout(&text);
    } else if let Some(out) = &a.out {
        if let Err(e) = report::write_json_lines(out, &results) {
            eprintln!("cannot write the results: {e}");
            code = code.max(Exit::Usage);
        }
    } else if !cfg.report.dir.is_empty() {
        match report::write_into_dir(std::path::Path::new(&cfg.report.dir), &results) {
            Ok(paths) => {
                for p in paths {
                    eprintln!("wrote {}", p.display());
                }
            }
            Err(e) => {
                eprintln!("cannot write the results: {e}");
                code = code.max(Exit::Usage);
            }
        }
    }
    code
}
