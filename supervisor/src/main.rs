//! The `flw` binary: the command line over the `flw` library.

use std::process::ExitCode;

/// jemalloc instead of the system allocator: each call allocates and frees
/// several kilobytes (rmcp's request task, JSON values) across threads,
/// where glibc's malloc spends a fifth of the supervisor's time.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    match flw::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(flw::cli::EXIT_USAGE)
        }
    }
}
