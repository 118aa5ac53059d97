//! The `plimsoll` binary: parses the command line and exits with the command's code.

fn main() {
    let code = match plimsoll::cli::parse() {
        Ok(cli) => plimsoll::cli::execute(cli),
        Err(code) => code,
    };
    std::process::exit(code);
}
