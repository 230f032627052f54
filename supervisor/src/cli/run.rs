//! `flw run TARGET FLOW --json STORE`: one run of a flow, the final shared
//! store on stdout, a live view (or plain lines, or JSON events) on stderr;
//! Ctrl-C or SIGTERM cancels the run through the kill path.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::run_view::{EventsFormat, View};
use crate::config::parse_duration;
use crate::graph::run::{run as run_flow, RunOptions};
use crate::graph::RunStatus;
use crate::router::Router;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: super::Target,
    /// The flow to run (see `flw tools TARGET` or the script's flows).
    flow: String,
    /// The initial shared store, a JSON object.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    json: String,
    /// What to show on stderr while it runs: a live view (the default on a
    /// terminal), plain lines (the default otherwise), JSON lines, or nothing.
    #[arg(long, value_enum, value_name = "FORMAT")]
    events: Option<EventsFormat>,
    /// Most node visits before the run fails (overrides the flow's max_steps).
    #[arg(long, value_name = "N")]
    max_steps: Option<u64>,
    /// The whole run's time limit, e.g. 30s, 5m (overrides the flow's deadline_ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    deadline: Option<Duration>,
    /// Time a cancelled call gets to stop on its own before its worker is killed.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    cancel_grace: Option<Duration>,
    /// Most worker processes per pool (default: the pool's max_workers).
    #[arg(long, value_name = "N", alias = "instances")]
    max_workers: Option<usize>,
    /// Show nothing on stderr but errors.
    #[arg(long, short)]
    quiet: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let format = if args.quiet {
        EventsFormat::None
    } else {
        args.events.unwrap_or_else(EventsFormat::default_for_stderr)
    };
    let held = crate::logging::init_with(
        match format {
            EventsFormat::View | EventsFormat::None => "warn,flw::pool=off",
            _ => "info,flw::pool=off",
        },
        &[],
    );
    let shared = super::json_object(&args.json, "the initial shared store", r#"{"query": "hi"}"#)?;
    let mut config = args.target.load()?;
    for pool in &mut config.pools {
        if let Some(g) = args.cancel_grace {
            pool.cancel_grace = g;
        }
        if let Some(n) = args.max_workers {
            pool.max_workers = n.max(1);
            pool.min_workers = pool.min_workers.min(pool.max_workers);
        }
    }
    let router = Router::start(config);
    let plan = match router.plan(&args.flow).await {
        Ok(plan) => plan,
        Err(e) => {
            router.shutdown(Duration::ZERO).await;
            super::release_or_discard(held, &e);
            eprintln!("error: {e}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };

    held.release();
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        let mut view = View::new(format);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => view.event(&ev),
                    None => break,
                },
                _ = tick.tick() => view.tick(),
            }
        }
        view.finish();
    });
    let opts = RunOptions {
        cancel: cancel.clone(),
        events: Some(tx),
        max_steps: args.max_steps,
        deadline: args.deadline,
    };
    let running = run_flow(&router, plan, shared, opts);
    tokio::pin!(running);
    let mut signal_code = None;
    let result = tokio::select! {
        r = &mut running => r,
        code = super::interrupted() => {
            signal_code = Some(code);
            cancel.cancel();
            running.await
        }
    };
    let _ = printer.await;
    router.shutdown(Duration::ZERO).await;
    {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &result.shared)?;
        writeln!(out)?;
    }
    if let Some(e) = &result.error {
        if result.status != RunStatus::Cancelled || format == EventsFormat::None {
            eprintln!("error: {}: {}", e.kind, e.message);
            if let Some(tb) = &e.traceback {
                eprintln!("{}", tb.trim_end());
            }
        }
    }
    Ok(match result.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Failed => ExitCode::from(super::EXIT_CALL_FAILED),
        RunStatus::Cancelled => ExitCode::from(signal_code.unwrap_or(super::EXIT_INTERRUPTED)),
    })
}
