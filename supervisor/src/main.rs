//! The `flw` binary: the command line over the `flw` library.

use std::process::ExitCode;

fn main() -> ExitCode {
    match flw::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(flw::cli::EXIT_USAGE)
        }
    }
}
