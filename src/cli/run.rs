//! `plimsoll run`: reads the configuration, then hands over to the daemon. A daemon that
//! cannot start exits 4, never with a verdict's code.

use super::{print_config_errors, Exit, RunArgs};
use crate::config;

pub fn run_daemon(a: RunArgs) -> Exit {
    let cfg = match config::load_file(&a.config) {
        Ok(c) => c,
        Err(e) => {
            print_config_errors(&a.config, &e);
            return Exit::Usage;
        }
    };
    crate::daemon::init_logging();
    let opts = crate::daemon::Options {
        config_path: Some(a.config),
        listen: a.listen,
        on_ready: None,
    };
    match crate::daemon::run(cfg, opts) {
        Ok(()) => Exit::Success,
        Err(e) => {
            tracing::error!("{e}");
            Exit::CannotStart
        }
    }
}
