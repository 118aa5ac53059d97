//! `plimsoll proxy --config FILE`: the fault proxy on its own, in front of a staging
//! dependency, with the toxics of its file, until SIGTERM or SIGINT.
//!
//! It only runs the proxy: no probes, no endpoints, no metrics.

use std::future::Future;
use std::path::Path;

use super::proxy::{FaultProxy, ListenerSpec, ShutdownReport};
use super::FaultError;
use crate::config::{load_proxy_file, ProxyConfig};

/// Reads the file, runs the proxy until SIGTERM or SIGINT, then shuts it down within the
/// file's grace period (plus 1 s).
pub fn run_proxy(config_path: &Path) -> Result<(), FaultError> {
    let cfg = load_proxy_file(config_path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(FaultError::Start)?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(FaultError::Start)?;
        let mut int = signal(SignalKind::interrupt()).map_err(FaultError::Start)?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        let report = serve_proxy(&cfg, stop).await?;
        eprintln!(
            "plimsoll proxy: stopped ({} connection(s) closed at the end of the grace period)",
            report.closed_connections
        );
        Ok(())
    })
}

/// Starts the proxy of `cfg`, prints one line per listener on stderr
/// (`plimsoll proxy: NAME listening on ADDR, forwarding to UPSTREAM`), runs until `stop`
/// resolves, then shuts down within the grace period.
pub async fn serve_proxy(
    cfg: &ProxyConfig,
    stop: impl Future<Output = ()>,
) -> Result<ShutdownReport, FaultError> {
    let specs = cfg
        .listener
        .iter()
        .map(ListenerSpec::from_config)
        .collect::<Result<Vec<_>, _>>()?;
    let proxy = FaultProxy::start(specs).await?;
    let handle = proxy.handle();
    for (name, addr, upstream) in handle.listeners() {
        let toxics = handle.toxics(&name).unwrap_or_default();
        let toxics = if toxics.is_empty() {
            String::new()
        } else {
            format!(
                ", toxics: {}",
                toxics
                    .iter()
                    .map(|t| t.describe())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        eprintln!("plimsoll proxy: {name} listening on {addr}, forwarding to {upstream}{toxics}");
    }
    stop.await;
    Ok(proxy.shutdown(cfg.grace_period.0).await)
}
