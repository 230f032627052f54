//! `flw graph TARGET FLOW`: the flow as a Mermaid flowchart on stdout.

use std::process::ExitCode;
use std::time::Duration;

use crate::router::Router;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: super::Target,
    /// The flow to draw.
    flow: String,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init("warn,flw::pool=off");
    let router = Router::start(args.target.load_one_each()?);
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
