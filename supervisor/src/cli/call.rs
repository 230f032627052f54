//! `flw call SCRIPT TOOL --json ARGS`: one call, result on stdout, progress
//! and errors on stderr; Ctrl-C or SIGTERM cancels through the kill path.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::call::events::{self, Received};
use crate::call::CallEvent;
use crate::config::{parse_duration, PoolConfig};
use crate::pool::CallOptions;
use crate::router::Router;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The worker script, e.g. agent.py.
    script: PathBuf,
    /// The tool to call (see `flw tools SCRIPT`).
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
    /// The Python interpreter for the worker (default: $FLW_PYTHON, else python3).
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Time the worker has to start and announce its tools.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    handshake_timeout: Duration,
    /// Set a variable for the worker (KEY=VALUE), or pass one through from this
    /// environment (KEY); workers otherwise see only an allow-list (PATH, HOME, LANG, ...).
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,
    /// Do not print progress and log lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init(if args.quiet {
        "warn,flw::pool=off"
    } else {
        "info,flw::pool=off"
    });
    let call_args = super::json_object(&args.json, "the arguments", r#"{"text": "hi"}"#)?;
    let mut pool = PoolConfig::for_script(&args.script)?;
    pool.min_workers = 1;
    pool.max_workers = 1;
    // One worker for one command: a fork server would only add a process.
    pool.spawn = crate::config::Spawn::Exec;
    pool.cancel_grace = args.cancel_grace;
    pool.max_restarts = 0;
    pool.interpreter = args.python;
    pool.handshake_timeout = args.handshake_timeout;
    super::apply_env(&mut pool, &args.env);
    let router = Router::for_pools(vec![pool]);
    if let Err(e) = router.tools().await {
        router.shutdown(Duration::ZERO).await;
        eprintln!("error: {e}");
        return Ok(ExitCode::from(super::EXIT_USAGE));
    }

    let cancel = CancellationToken::new();
    let (tx, mut rx) = events::channel();
    let quiet = args.quiet;
    let printer = tokio::spawn(async move {
        while let Some(received) = rx.recv().await {
            if quiet {
                continue;
            }
            match received {
                Received::Event(ev) => print_event(&ev),
                Received::Gap(n) => {
                    eprintln!("({n} log lines and chunks dropped: stderr was read too slowly)")
                }
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
        CallEvent::Log { .. } => {} // already logged through tracing
        CallEvent::Chunk(Value::String(s)) => {
            eprint!("{s}");
        }
        CallEvent::Chunk(other) => eprintln!("{other}"),
    }
}
