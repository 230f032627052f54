//! Log records go to stderr through `tracing`: stdout belongs to results
//! (`flw call`) or to the MCP protocol (`flw mcp`).

use flw_protocol::LogLevel;
use tracing_subscriber::EnvFilter;

/// The target of the log lines a worker sends for a call (`ctx.log`).
/// `flw call` turns it off and logs each line under [`CALL_TARGET`] as it
/// takes it from the call's events, so that it stays in order with the
/// call's progress.
pub const WORKER_CALL_TARGET: &str = "flw::worker::call";

/// The target `flw call` logs its call's log lines under.
pub const CALL_TARGET: &str = "flw::call";

/// Installs the stderr subscriber. `FLW_LOG` (e.g. `debug`,
/// `flw=debug,flw::worker=warn`) overrides `default`.
pub fn init(default: &str) {
    init_with(default, &[]);
}

/// [`init`], with directives (e.g. `flw::worker::call=off`) that hold
/// over `FLW_LOG` too.
pub fn init_with(default: &str, always: &[&str]) {
    let mut filter = EnvFilter::try_from_env("FLW_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    for directive in always {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// One `tracing` event at a [`LogLevel`] (the macros want the level as a
/// constant).
macro_rules! at_level {
    ($level:expr, target: $target:expr, $($rest:tt)*) => {
        match $level {
            LogLevel::Debug => tracing::debug!(target: $target, $($rest)*),
            LogLevel::Info => tracing::info!(target: $target, $($rest)*),
            LogLevel::Warning => tracing::warn!(target: $target, $($rest)*),
            LogLevel::Error => tracing::error!(target: $target, $($rest)*),
        }
    };
}

/// Logs a `log` line a worker sent: under [`WORKER_CALL_TARGET`] when it
/// belongs to a call, else under `flw::worker`.
pub fn worker_log(worker: &str, call: Option<u64>, level: LogLevel, message: &str) {
    match call {
        Some(call) => at_level!(level, target: WORKER_CALL_TARGET, worker, call, "{message}"),
        None => at_level!(level, target: "flw::worker", worker, "{message}"),
    }
}

/// Logs a call's log line under [`CALL_TARGET`] (`flw call`).
pub fn call_log(level: LogLevel, message: &str) {
    at_level!(level, target: CALL_TARGET, "{message}");
}
