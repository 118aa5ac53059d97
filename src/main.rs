//! The `plimsoll` binary: parses the command line, runs the command, and turns its [`Exit`]
//! into the process exit code (the policy lives in `plimsoll::exit`).
//!
//! [`Exit`]: plimsoll::exit::Exit

use std::process::ExitCode;

fn main() -> ExitCode {
    let exit = match plimsoll::cli::parse() {
        Ok(cli) => plimsoll::cli::execute(cli),
        Err(exit) => exit,
    };
    exit.into()
}
