//! Log records go to stderr through `tracing`: stdout belongs to results
//! (`flw call`) or to the MCP protocol (`flw mcp`).

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber. `FLW_LOG` (e.g. `debug`,
/// `flw=debug,flw::worker=warn`) overrides `default`.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_env("FLW_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
