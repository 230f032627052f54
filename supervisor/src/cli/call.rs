//! `flw call SCRIPT TOOL --json ARGS`: one call, result on stdout, progress
//! and errors on stderr; Ctrl-C or SIGTERM cancels through the kill path.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::call::events::{self, Received};
use crate::call::CallEvent;
use crate::config::parse_duration;
use crate::pool::CallOptions;
use crate::router::Router;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: super::Target,
    /// The tool to call (see `flw tools TARGET`).
    tool: String,
    /// The arguments as a JSON object.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    json: String,
    /// Give up (and kill the worker) after this long, e.g. 30s, 500ms, 2m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Time a cancelled call gets to stop on its own before its worker is killed.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    cancel_grace: Duration,
    /// Do not print progress and log lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // The call's log lines are logged by the printer below, in order with
    // its progress; the worker's reader would log them out of that order.
    let call_logs_off = format!("{}=off", crate::logging::WORKER_CALL_TARGET);
    let held = crate::logging::init_with(
        if args.quiet {
            "warn,flw::pool=off"
        } else {
            "info,flw::pool=off"
        },
        &[&call_logs_off],
    );
    let call_args = super::json_object(&args.json, "the arguments", r#"{"text": "hi"}"#)?;
    let mut config = args.target.load_one_each()?;
    for pool in &mut config.pools {
        pool.cancel_grace = args.cancel_grace;
    }
    let router = Router::start(config);
    if let Err(e) = router.tools().await {
        router.shutdown(Duration::ZERO).await;
        super::release_or_discard(held, &e);
        eprintln!("error: {e}");
        return Ok(ExitCode::from(super::EXIT_USAGE));
    }
    held.release();

    let cancel = CancellationToken::new();
    let (tx, mut rx) = events::channel();
    let quiet = args.quiet;
    let printer = tokio::spawn(async move {
        while let Some(received) = rx.recv().await {
            match received {
                // The filter decides (--quiet still shows warnings and errors).
                Received::Event(CallEvent::Log { level, message }) => {
                    crate::logging::call_log(level, &message)
                }
                Received::Event(ev) if !quiet => print_event(&ev),
                Received::Gap(n) if !quiet => {
                    eprintln!(
                        "({} dropped: stderr was read too slowly)",
                        crate::plural::count(n, "log line or chunk", "log lines and chunks")
                    )
                }
                _ => {}
            }
        }
    });
    let opts = CallOptions {
        timeout: args.timeout,
        cancel: cancel.clone(),
        events: Some(tx),
    };
    let call = router.call(&args.tool, call_args, opts);
    tokio::pin!(call);
    let mut signal_code = None;
    let outcome = tokio::select! {
        o = &mut call => o,
        code = super::interrupted() => {
            signal_code = Some(code);
            cancel.cancel();
            call.await
        }
    };
    let _ = printer.await;
    router.shutdown(Duration::ZERO).await;
    match outcome {
        Ok(value) => {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &value)?;
            writeln!(out)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(f) => {
            eprintln!("error: {}: {}", f.kind, f.message);
            if let Some(tb) = f.traceback {
                eprintln!("{}", tb.trim_end());
            }
            Ok(ExitCode::from(
                signal_code.unwrap_or(super::EXIT_CALL_FAILED),
            ))
        }
    }
}

fn print_event(ev: &CallEvent) {
    match ev {
        CallEvent::Progress {
            progress,
            total,
            message,
        } => {
            let mut line = format!("progress {progress}");
            if let Some(t) = total {
                line.push_str(&format!("/{t}"));
            }
            if let Some(m) = message {
                line.push_str(&format!(": {m}"));
            }
            eprintln!("{line}");
        }
        CallEvent::Log { level, message } => crate::logging::call_log(*level, message),
        CallEvent::Chunk(Value::String(s)) => {
            eprint!("{s}");
        }
        CallEvent::Chunk(other) => eprintln!("{other}"),
    }
}
