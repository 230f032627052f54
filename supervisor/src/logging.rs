//! Log records go to stderr through `tracing`: stdout belongs to results
//! (`flw call`) or to the MCP protocol (`flw mcp`).

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use flw_protocol::LogLevel;
use tracing_subscriber::fmt::MakeWriter;
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
    init_with(default, &[]).release();
}

/// [`init`], with directives (e.g. `flw::worker::call=off`) that hold
/// over `FLW_LOG` too; the workers' records are held back until
/// [`Held::release`] or [`Held::discard`].
pub fn init_with(default: &str, always: &[&str]) -> Held {
    let mut filter = EnvFilter::try_from_env("FLW_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    for directive in always {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    let held = Held::default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(held.clone())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
    held
}

/// Most bytes of worker records held back; past it, what is held is
/// written out and nothing more is held.
const MAX_HELD: usize = 256 * 1024;

/// The records of the workers (targets under `flw::worker`: their stdout,
/// stderr and log lines), held back while a one-shot command's workers
/// start. A worker that fails to start is reported with the last lines of
/// its stderr, so the command discards what was held rather than show the
/// same traceback twice; once the workers are up, it releases it.
#[derive(Clone)]
pub struct Held(Arc<Mutex<Option<Vec<u8>>>>);

impl Default for Held {
    fn default() -> Self {
        Held(Arc::new(Mutex::new(Some(Vec::new()))))
    }
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<u8>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes out what was held; the workers' records pass from now on.
    pub fn release(&self) {
        let mut held = self.lock();
        if let Some(bytes) = held.take() {
            let _ = std::io::stderr().write_all(&bytes);
        }
    }

    /// Drops what was held; the workers' records pass from now on.
    pub fn discard(&self) {
        self.lock().take();
    }
}

/// A record on its way to stderr, or to the held bytes.
pub struct HeldWriter {
    held: Option<Held>,
}

impl std::io::Write for HeldWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(held) = &self.held {
            let mut state = held.lock();
            if let Some(bytes) = state.as_mut() {
                if bytes.len() + buf.len() <= MAX_HELD {
                    bytes.extend_from_slice(buf);
                    return Ok(buf.len());
                }
                let _ = std::io::stderr().write_all(bytes);
                *state = None;
            }
        }
        std::io::stderr().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Held {
    type Writer = HeldWriter;

    fn make_writer(&'a self) -> HeldWriter {
        HeldWriter { held: None }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> HeldWriter {
        let target = meta.target();
        let worker = target == "flw::worker" || target.starts_with("flw::worker::");
        HeldWriter {
            held: worker.then(|| self.clone()),
        }
    }
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
