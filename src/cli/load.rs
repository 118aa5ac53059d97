//! `plimsoll load URL`: ad hoc load against one URL, built as the same configuration a file
//! would give and validated the same way.

use super::progress::{ceiling_notice, colour_on, interrupt_flag, run_with_progress, Telemetry};
use super::{stdout, Exit, LoadArgs};
use crate::config::{
    self, Config, LoadConfig, ProbeConfig, ProbeSpec, RequestConfig, Secret, TargetConfig,
};
use crate::report;

/// Arrivals per second of `plimsoll load URL` when neither `--rate` nor `--concurrency` is
/// given: a tool pointed at production must not be one keystroke from a flood.
pub const DEFAULT_RATE: f64 = 10.0;

pub fn load(a: LoadArgs) -> Exit {
    let (cfg, probe) = match load_config(&a) {
        Ok(x) => x,
        Err(errors) => {
            eprintln!("plimsoll load: {} problem(s):", errors.len());
            for e in errors {
                eprintln!("  {e}");
            }
            return Exit::Usage;
        }
    };
    if a.rate.is_none() && a.concurrency.is_none() {
        eprintln!(
            "no --rate or --concurrency given: a gentle {DEFAULT_RATE} requests/s for {} \
             (open model); say --rate R or --concurrency C for more",
            a.duration
        );
    }
    if let Some(n) = ceiling_notice(&probe) {
        eprintln!("{n}");
    }
    // OTLP as the configuration or the standard `OTEL_EXPORTER_OTLP_*` variables ask; flushed
    // before the command exits.
    let telemetry = Telemetry::with_otlp(&cfg.otlp);
    let stop = interrupt_flag();
    let result = run_with_progress(&cfg, &probe, &stop, &telemetry, |_| {});
    telemetry.shutdown_otlp();
    // The summary goes where people read it; colour only when that is a terminal.
    let colour = if a.json {
        colour_on(&std::io::stderr())
    } else {
        colour_on(&std::io::stdout())
    };
    let summary = report::summary::render_with(std::slice::from_ref(&result), colour);
    if a.json {
        eprint!("{summary}");
        stdout(&(result.to_json_pretty() + "\n"));
    } else {
        stdout(&summary);
    }
    Exit::Verdict(result.grade)
}

/// The Content-Type of a `--body` without one: JSON when it parses as JSON, text otherwise.
fn content_type_of(body: &str) -> &'static str {
    if serde_json::from_str::<serde_json::Value>(body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// Turns `load` flags into the same configuration a file would give, and validates it the
/// same way, so the command line and files cannot drift apart.
fn load_config(a: &LoadArgs) -> Result<(Config, ProbeConfig), Vec<String>> {
    let mut problems = Vec::new();
    let http = match a.http.as_str() {
        "1.1" | "1" => config::HttpVersion::Http1,
        "2" => config::HttpVersion::Http2,
        "auto" => config::HttpVersion::Auto,
        other => {
            problems.push(format!("--http: {other:?} is not one of 1.1, 2, auto"));
            config::HttpVersion::Auto
        }
    };
    let base = match config::parse_base_url(&a.url) {
        Ok(b) => match &b.userinfo {
            // The target keeps the credentials; the engine sends them as Basic auth.
            Some(_) => {
                let uri: http::Uri = a.url.parse().expect("checked above");
                let scheme = uri.scheme_str().unwrap_or("http");
                let auth = uri.authority().map(|x| x.as_str()).unwrap_or("");
                format!("{scheme}://{auth}")
            }
            None => b.origin(),
        },
        Err(e) => {
            problems.push(format!("URL: {e}"));
            String::new()
        }
    };
    let mut request = RequestConfig::simple(&a.method, &a.url);
    for h in &a.headers {
        match h.split_once(':') {
            Some((k, v)) => {
                request
                    .headers
                    .insert(k.trim().to_string(), Secret::literal(v.trim()));
            }
            None => problems.push(format!("--header {h:?}: write it as `Name: value`")),
        }
    }
    request.body = a.body.clone();
    if let Some(body) = &a.body {
        let given = request
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-type"));
        if !given {
            request.headers.insert(
                "Content-Type".into(),
                Secret::literal(content_type_of(body)),
            );
        }
    }
    let mut load = LoadConfig::closed(a.concurrency.unwrap_or(1), a.duration);
    if a.concurrency.is_none() {
        let rate = a.rate.unwrap_or(DEFAULT_RATE);
        load.concurrency = None;
        load.phases = vec![config::PhaseConfig {
            name: Some("constant".into()),
            duration: Some(a.duration),
            rate: Some(rate),
            ramp_to: None,
            burst: None,
        }];
    }
    load.timeout = a.timeout;
    load.workers = a.workers;
    if let Some(m) = a.max_in_flight {
        load.max_in_flight = m;
    }
    load.request = Some(request);
    let target = TargetConfig {
        name: "cli".into(),
        url: base,
        http,
        tls: config::TlsConfig {
            insecure_skip_verify: a.insecure,
            ..Default::default()
        },
        headers: Default::default(),
    };
    let probe = ProbeConfig {
        name: "load".into(),
        target: Some("cli".into()),
        target_rps: None,
        thresholds: Default::default(),
        schedule: None,
        share_target: false,
        spec: ProbeSpec::Load(load),
    };
    let mut cfg = Config {
        target: vec![target],
        probe: vec![probe],
        report: config::ReportConfig { dir: String::new() },
        daemon: Default::default(),
        otlp: Default::default(),
        limits: Default::default(),
        guardrails: Default::default(),
        // An ad hoc run is not part of any probe's series.
        baseline: config::BaselineConfig {
            enabled: false,
            ..Default::default()
        },
    };
    if problems.is_empty() {
        let mut p = config::Problems::default();
        cfg.validate(&mut p);
        problems.extend(p.into_errors().into_iter().map(|e| e.to_string()));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let probe = cfg.probe[0].clone();
    Ok((cfg, probe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_gets_a_content_type_by_what_it_is() {
        assert_eq!(content_type_of(r#"{"a": 1}"#), "application/json");
        assert_eq!(content_type_of("[1, 2]"), "application/json");
        assert_eq!(content_type_of("hello"), "text/plain; charset=utf-8");
    }
}
