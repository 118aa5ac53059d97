//! `plimsoll proxy --config FILE`: the fault proxy on its own, so a team can put it in front
//! of a staging dependency. Exit 3 for a bad file, 4 when a listener cannot be bound.

use super::{print_config_errors, Exit};

pub fn proxy(file: &std::path::Path) -> Exit {
    crate::daemon::init_logging();
    match crate::fault::run_proxy(file) {
        Ok(()) => Exit::Success,
        Err(crate::fault::FaultError::Config(e)) => {
            print_config_errors(file, &e);
            Exit::Usage
        }
        Err(e) => {
            eprintln!("plimsoll proxy: {e}");
            Exit::CannotStart
        }
    }
}
