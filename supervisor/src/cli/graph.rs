//! `flw graph TARGET FLOW`: the flow as a Mermaid flowchart on stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::router::Router;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A worker script (agent.py, agent.ts) or a flw.toml.
    target: PathBuf,
    /// The flow to draw.
    flow: String,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init("warn,flw::pool=off");
    let mut config = super::config_for_target(&args.target)?;
    for pool in &mut config.pools {
        pool.min_workers = 1;
        pool.max_workers = 1;
        // One worker for one command: a fork server would only add a process.
        pool.spawn = crate::config::Spawn::Exec;
        pool.max_restarts = 0;
    }
    let router = Router::start(config);
    let plan = router.plan(&args.flow).await;
    router.shutdown(Duration::ZERO).await;
    match plan {
        Ok(plan) => {
            print!("{}", crate::graph::mermaid::render(&plan));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(super::EXIT_USAGE))
        }
    }
}
