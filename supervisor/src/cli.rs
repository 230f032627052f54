//! The command line: argument parsing and one module per subcommand.
//! Exit codes are decided here and in `main.rs`, nowhere else.

mod call;
mod daemon;
mod graph;
mod mcp;
mod reload;
mod run;
mod run_view;
mod serve;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, PoolConfig};

/// Exit code when a call fails.
pub const EXIT_CALL_FAILED: u8 = 1;
/// Exit code for bad usage, config or a worker that cannot start.
pub const EXIT_USAGE: u8 = 2;
/// Exit code after Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit code after SIGTERM (128 + SIGTERM).
pub const EXIT_TERMINATED: u8 = 143;

#[derive(Debug, Parser)]
#[command(
    name = "flw",
    version,
    about = "Run AI-agent tools and flows written in Python, TypeScript or JavaScript: as an MCP \
server, an HTTP daemon, or one call at a time.",
    long_about = "flw runs your tools in worker processes it supervises. Write a Python file \
with @tool functions (or a TypeScript or JavaScript file that exports tool(...)s), then serve it \
to an MCP host (flw mcp agent.py) or call a tool from the shell (flw call agent.py echo --json \
'{\"text\": \"hi\"}'). Cancelling a call kills the worker's whole process group, so nothing \
the tool started keeps running.",
    disable_help_subcommand = true,
    after_help = "Examples:\n  \
flw tools examples/hello-python/agent.py\n  \
flw tools examples/hello-ts/agent.ts\n  \
flw call examples/hello-python/agent.py echo --json '{\"text\": \"hi\"}'\n  \
flw mcp examples/hello-python/agent.py\n  \
flw mcp --config flw.toml\n  \
flw serve agent.py --listen 127.0.0.1:8077\n  \
flw ps\n  \
flw cancel r_3f2a9c...\n  \
flw run agent.py agent --json '{\"query\": \"hi\"}'\n  \
flw graph agent.py agent\n  \
flw reload agent.py\n\n\
Logs go to stderr; set FLW_LOG=debug for more."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the tools a worker script provides, with their parameters.
    Tools(tools::Args),
    /// Call one tool and print its result as JSON on stdout.
    Call(call::Args),
    /// Serve tools to an MCP host (IDE, desktop agent app) over stdio.
    Mcp(mcp::Args),
    /// Run a flow (an agent graph) and print its final shared store as JSON on stdout.
    Run(run::Args),
    /// Print a flow as a Mermaid flowchart.
    Graph(graph::Args),
    /// Serve tools and flows over HTTP: MCP Streamable HTTP, a JSON API, metrics.
    Serve(serve::Args),
    /// List running flw servers and the runs in flight in each flw serve.
    Ps(daemon::PsArgs),
    /// Cancel a run of a running flw serve (its worker's process group is killed).
    Cancel(daemon::CancelArgs),
    /// Make running flw servers start new workers with the scripts as they are now.
    Reload(reload::Args),
    /// Print the help of flw, or of one of its commands (flw help call).
    Help(HelpArgs),
}

#[derive(Debug, clap::Args)]
struct HelpArgs {
    /// The command whose help to print, e.g. call.
    command: Option<String>,
}

/// `flw help [COMMAND]`: clap's own help subcommand refuses `--help`
/// (`flw help --help` was an error), so flw has its own.
fn help(args: &HelpArgs) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let mut flw = Cli::command();
    flw.build(); // gives each command its usage line as `flw COMMAND`
    let Some(name) = &args.command else {
        return print_stdout(&flw.render_long_help().to_string());
    };
    match flw.find_subcommand_mut(name) {
        Some(command) => print_stdout(&command.render_long_help().to_string()),
        None => {
            let names: Vec<&str> = flw.get_subcommands().map(|c| c.get_name()).collect();
            eprintln!(
                "error: flw has no command {name:?}; the commands are: {}",
                names.join(", ")
            );
            Ok(ExitCode::from(EXIT_USAGE))
        }
    }
}

/// Parses the command line and runs it.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if let Command::Help(args) = &cli.command {
        return help(args);
    }
    crate::nofile::raise();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Tools(a) => tools::run(a).await,
            Command::Call(a) => call::run(a).await,
            Command::Mcp(a) => mcp::run(a).await,
            Command::Run(a) => run::run(a).await,
            Command::Graph(a) => graph::run(a).await,
            Command::Serve(a) => serve::run(a).await,
            Command::Ps(a) => daemon::ps(a).await,
            Command::Cancel(a) => daemon::cancel(a).await,
            Command::Reload(a) => reload::run(a).await,
            Command::Help(a) => help(&a),
        }
    });
    // Blocking work still under way (an `npm install` of the tsx loader,
    // say) must not hold up the exit: the runtime would wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

/// What every command that starts workers takes besides the scripts:
/// the interpreter, the environment, and how long a worker may take to
/// start. Each applies to every pool, over what a flw.toml says.
#[derive(Debug, clap::Args)]
struct WorkerOptions {
    /// The interpreter for Python workers (default: the pool's interpreter, else
    /// $FLW_PYTHON, else python3); JavaScript and TypeScript workers run under
    /// $FLW_NODE, else node.
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Set a variable for the workers (KEY=VALUE), or pass one through from this
    /// environment (KEY); workers otherwise see only an allow-list (PATH, HOME, LANG, ...).
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,
    /// Time a worker has to start and announce its tools, e.g. 30s [default: the
    /// pool's handshake_timeout, else 10s].
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    handshake_timeout: Option<std::time::Duration>,
}

impl WorkerOptions {
    /// Applies the options to every pool of `config`.
    fn apply(&self, config: &mut Config) {
        for pool in &mut config.pools {
            let python = crate::sdk::Language::of(&pool.script) == Ok(crate::sdk::Language::Python);
            if let (Some(p), true) = (&self.python, python) {
                pool.interpreter = Some(p.clone());
            }
            if let Some(t) = self.handshake_timeout {
                pool.handshake_timeout = t;
            }
            apply_env(pool, &self.env);
        }
    }
}

/// The workers of a command that runs once (`tools`, `call`, `run`,
/// `graph`): one worker script or a flw.toml, and the worker options.
#[derive(Debug, clap::Args)]
struct Target {
    /// A worker script (agent.py, agent.ts, agent.js) or a flw.toml whose pools
    /// (and graph files) to use.
    target: PathBuf,
    #[command(flatten)]
    workers: WorkerOptions,
}

impl Target {
    /// The config of the target, with the worker options applied.
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = if self.target.extension().is_some_and(|e| e == "toml") {
            Config::load(&self.target)?
        } else {
            pools_from(std::slice::from_ref(&self.target), None)?
        };
        self.workers.apply(&mut config);
        Ok(config)
    }

    /// [`Target::load`] for a command that needs one worker per pool and
    /// no more: no restarts, and exec'd (a fork server would only add a
    /// process).
    fn load_one_each(&self) -> anyhow::Result<Config> {
        let mut config = self.load()?;
        for pool in &mut config.pools {
            pool.min_workers = 1;
            pool.max_workers = 1;
            pool.spawn = crate::config::Spawn::Exec;
            pool.max_restarts = 0;
        }
        Ok(config)
    }
}

/// The pools a server runs: scripts, a config, and the worker options.
#[derive(Debug, clap::Args)]
struct ServedPools {
    /// Worker scripts whose tools and flows to serve, e.g. agent.py.
    scripts: Vec<PathBuf>,
    /// A flw.toml that configures pools (their scripts, modes, limits, env).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    workers: WorkerOptions,
}

impl ServedPools {
    /// The config, with the worker options applied to every pool.
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = pools_from(&self.scripts, self.config.as_ref())?;
        self.workers.apply(&mut config);
        Ok(config)
    }

    /// The config file as an absolute path, for the instance registry.
    fn config_file(&self) -> Option<PathBuf> {
        self.config
            .as_deref()
            .map(|c| std::path::absolute(c).unwrap_or_else(|_| c.to_path_buf()))
    }
}

/// Pools for scripts named on the command line, or from `--config`.
fn pools_from(scripts: &[PathBuf], config: Option<&PathBuf>) -> anyhow::Result<Config> {
    let mut cfg = match config {
        Some(path) => Config::load(path)?,
        None => Config {
            pools: Vec::new(),
            max_in_flight: None,
            flows: Vec::new(),
            serve: Default::default(),
        },
    };
    for s in scripts {
        let pool = PoolConfig::for_script(s)?;
        if let Some(other) = cfg.pools.iter().find(|p| p.name == pool.name) {
            anyhow::bail!(
                "{} and {} would both be pool {:?} (a pool is named after its script): name the pools in a flw.toml, e.g. [pools.a] script = \"{}\"",
                other.script.display(),
                pool.script.display(),
                pool.name,
                s.display()
            );
        }
        cfg.pools.push(pool);
    }
    if cfg.pools.is_empty() {
        anyhow::bail!(
            "name a worker script (e.g. flw mcp agent.py) or a config (--config flw.toml)"
        );
    }
    Ok(cfg)
}

/// The workers' output held back while they started (see
/// [`crate::logging::Held`]): dropped when a worker failed to start, since
/// the error already ends with its stderr; printed for any other error (a
/// flow or tool defined twice, an unknown flow), where it is news.
fn release_or_discard(held: crate::logging::Held, e: &crate::router::CatalogError) {
    use crate::pool::ToolsUnavailable;
    use crate::router::CatalogError;
    match e {
        CatalogError::Pool(ToolsUnavailable::Failed(_)) => held.discard(),
        _ => held.release(),
    }
}

/// Writes `text` to stdout; a reader that went away (`flw tools | head`)
/// is not an error.
fn print_stdout(text: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Parses `--json`, which must be an object; `what` says what it holds and
/// `example` shows one, for the error.
fn json_object(
    text: &str,
    what: &str,
    example: &str,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(other) => {
            anyhow::bail!("--json must be a JSON object ({what}), like '{example}', not {other}")
        }
        Err(e) => anyhow::bail!("--json is not valid JSON: {e}"),
    }
}

/// Applies `--env KEY=VALUE` (set) and `--env KEY` (pass through) to a pool.
fn apply_env(pool: &mut PoolConfig, env: &[String]) {
    for e in env {
        match e.split_once('=') {
            Some((k, v)) => pool.env.push((k.to_string(), v.to_string())),
            None => pool.pass_env.push(e.clone()),
        }
    }
}

/// What starts reloads in a server: the SIGHUP handler and the file
/// watcher. A drain stops them ([`Reloaders::stop`]).
struct Reloaders {
    router: crate::router::Router,
    sighup: Option<tokio::task::JoinHandle<()>>,
    watch: Option<crate::watch::WatchHandle>,
}

impl Reloaders {
    /// Installs the SIGHUP handler now (so that a `flw reload` right after
    /// the server registered cannot kill it with SIGHUP's default action);
    /// each SIGHUP reloads every pool.
    fn on_sighup(router: &crate::router::Router) -> Reloaders {
        Reloaders {
            router: router.clone(),
            sighup: reload_on_sighup(router.clone()),
            watch: None,
        }
    }

    /// Watches the files of the pools that want it (`watch` in flw.toml,
    /// else `default`); a watcher that cannot start is logged, not fatal.
    fn watch(&mut self, default: bool) {
        let pools: Vec<_> = self
            .router
            .pools()
            .iter()
            .filter(|p| p.config().watch.unwrap_or(default))
            .cloned()
            .collect();
        self.watch = match crate::watch::start(pools) {
            Ok(handle) => handle,
            Err(e) => {
                tracing::warn!("cannot watch the worker scripts, so saves will not reload them (flw reload still does): {e:#}");
                None
            }
        };
    }

    /// A drain begins: SIGHUP is ignored from now on, file changes are not
    /// watched, and a reload under way gives up its new generation.
    fn stop(&mut self) {
        if let Some(task) = self.sighup.take() {
            task.abort();
        }
        self.watch = None;
        self.router.stop_reloads();
    }
}

impl Drop for Reloaders {
    fn drop(&mut self) {
        if let Some(task) = self.sighup.take() {
            task.abort();
        }
    }
}

/// Returns the task that reloads every pool at each SIGHUP, with the
/// handler installed.
fn reload_on_sighup(router: crate::router::Router) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(hup) => hup,
        Err(e) => {
            tracing::warn!("cannot handle SIGHUP, so flw reload will not reach this server: {e}");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading every pool");
            router.request_reload("SIGHUP");
        }
    }))
}

/// Resolves when SIGINT or SIGTERM arrives, with the exit code it implies.
async fn interrupted() -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => EXIT_INTERRUPTED,
        _ = term.recv() => EXIT_TERMINATED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_that_starts_workers_takes_the_worker_options() {
        let options = [
            "--python",
            "py",
            "--env",
            "A=1",
            "--handshake-timeout",
            "1s",
        ];
        for command in [
            &["tools", "agent.py"][..],
            &["call", "agent.py", "echo"],
            &["mcp", "agent.py"],
            &["run", "agent.py", "flow"],
            &["graph", "agent.py", "flow"],
            &["serve", "agent.py"],
        ] {
            let args = ["flw"].iter().chain(command).chain(&options);
            if let Err(e) = Cli::try_parse_from(args) {
                panic!("flw {}: {e}", command[0]);
            }
        }
    }
}
