//! The `flw` binary: the command line over the `flw` library.

use std::process::ExitCode;

/// jemalloc instead of the system allocator: each call allocates and frees
/// several kilobytes (rmcp's request task, JSON values) across threads,
/// where glibc's malloc spends a fifth of the supervisor's time.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // A forked Python worker's keeper (`flw::keeper`): before anything else.
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() == Some(std::ffi::OsStr::new(flw::keeper::ARG)) {
        flw::keeper::main(&args.collect::<Vec<_>>());
    }
    flw::keeper::this_binary_keeps();
    match flw::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(flw::cli::EXIT_USAGE)
        }
    }
}
