//! `plimsoll once`: runs the configured probes now, prints a summary, writes the result
//! documents, and exits with the worst grade.

use std::sync::atomic::Ordering;

use super::progress::{interrupt_flag, run_with_progress};
use super::{print_config_errors, stdout, Exit, OnceArgs};
use crate::config::{self, ProbeConfig};
use crate::report;

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
    let stop = interrupt_flag();
    let mut results = Vec::new();
    for p in selected {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        results.push(run_with_progress(&cfg, p, &stop));
    }
    stdout(&report::summary::render(&results));
    let mut code = Exit::worst(results.iter().map(|r| r.grade));
    if let Some(out) = &a.out {
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
