//! `plimsoll validate`: every problem of a configuration, each with its path and line;
//! `--no-secrets` checks structure without resolving `env:`/`file:` secrets (CI lint).

use super::{print_config_errors, Exit, ValidateArgs};
use crate::config;

pub fn validate(a: ValidateArgs) -> Exit {
    let loaded = if a.no_secrets {
        config::load_file_without_secrets(&a.config)
    } else {
        config::load_file(&a.config)
    };
    match loaded {
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
