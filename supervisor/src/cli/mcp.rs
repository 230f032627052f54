//! `flw mcp`: serve the scripts' tools to an MCP host over stdio.
//!
//! It serves until the host closes stdin or a SIGTERM or SIGINT arrives.
//! Then it drains: it reloads nothing more and takes no new calls; the
//! calls in flight run on for up to `--drain` and are answered; the calls
//! left after that are cancelled through the kill path (and answered too);
//! then the session ends and flw exits. A signal during the drain cuts it
//! short.

use std::process::ExitCode;
use std::time::Duration;

use crate::mcp::McpServer;
use crate::router::Router;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pools: super::ServedPools,
    /// How long calls in flight may run on after the client leaves or a signal arrives.
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration, default_value = "5s")]
    drain: Duration,
    /// Do not reload workers when their files change (pools can also say `watch = false`).
    #[arg(long)]
    no_watch: bool,
}

/// How long the session may take to send its last answers and end.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init("info,rmcp=warn");
    let config = args.pools.load()?;
    let scripts = config.pools.iter().map(|p| p.script.clone()).collect();
    let config_file = args.pools.config_file();
    let router = Router::start(config);
    let mut reloaders = super::Reloaders::on_sighup(&router);
    let _registered = crate::instances::register("mcp", scripts, config_file, None);
    reloaders.watch(!args.no_watch);
    let session = McpServer::new(router.clone()).serve_stdio();
    let mut code = tokio::select! {
        () = session.client_left() => ExitCode::SUCCESS,
        code = super::interrupted() => {
            tracing::info!("{}: draining (up to {:?}); send it again to stop at once", signal_name(code), args.drain);
            ExitCode::from(code)
        }
    };
    reloaders.stop();
    tokio::select! {
        () = router.shutdown(args.drain) => {}
        again = super::interrupted() => {
            tracing::info!("{}: cancelling the calls in flight", signal_name(again));
            code = ExitCode::from(again);
            router.shutdown(Duration::ZERO).await;
        }
    }
    if let Err(e) = session.close(CLOSE_WITHIN).await {
        tracing::error!("MCP session ended: {e:#}");
    }
    Ok(code)
}

fn signal_name(code: u8) -> &'static str {
    if code == super::EXIT_INTERRUPTED {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}
