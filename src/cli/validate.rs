//! `plimsoll validate`: every problem of a configuration, each with its path and line.

use super::{print_config_errors, Exit, ValidateArgs};
use crate::config;

pub fn validate(a: ValidateArgs) -> Exit {
    match config::load_file(&a.config) {
        Ok(c) => {
            println!(
                "{}: ok ({} target(s), {} probe(s))",
                a.config.display(),
                c.target.len(),
                c.probe.len()
            );
            Exit::Success
        }
        Err(e) => {
            print_config_errors(&a.config, &e);
            Exit::Usage
        }
    }
}
