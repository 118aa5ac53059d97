//! The deployment files stay in step with the binary: the systemd unit verifies, and the
//! Kubernetes manifest's embedded configuration validates.

use std::process::Command;

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/systemd/plimsoll.service"
    ))
    .unwrap();
    assert!(unit.contains("Type=notify"));
    assert!(unit.contains("WatchdogSec="));
    // Point ExecStart at the binary under test so verify can check it exists.
    let unit = unit.replace("/usr/local/bin/plimsoll", env!("CARGO_BIN_EXE_plimsoll"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plimsoll.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (scripts/test installs systemd)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The indented block under `plimsoll.toml: |` in the manifest.
fn embedded_config(manifest: &str) -> String {
    let mut lines = manifest
        .lines()
        .skip_while(|l| !l.trim_end().ends_with("plimsoll.toml: |"));
    lines.next().expect("the manifest embeds plimsoll.toml");
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_kubernetes_configuration_validates() {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/plimsoll.yaml"
    ))
    .unwrap();
    let text = embedded_config(&manifest);
    let cfg = plimsoll::config::load_str(&text, std::iter::empty())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(cfg.daemon.listen, "0.0.0.0:9464");
    assert!(cfg.probe.iter().all(|p| p.schedule.is_some()));
    for probe in ["path: /healthz", "path: /readyz"] {
        assert!(manifest.contains(probe), "{probe}");
    }
}
