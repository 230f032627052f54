//! `flw.toml`: pools of workers and their limits, and the defaults used when
//! scripts are named on the command line.
//!
//! ```toml
//! [pools.agent]
//! script = "agent.py"        # relative to this file
//! mode = "isolated"          # or "shared" (default: isolated for Python,
//!                            # shared for TypeScript and JavaScript)
//! min_workers = 1            # kept warm
//! max_workers = 64           # started while calls wait (default: by memory)
//! idle_timeout = "60s"       # extra workers idle this long are stopped
//! spawn = "fork"             # Python: fork from a warm server, or "exec"
//! cancel_grace = "1s"        # cooperative cancel before SIGTERM
//! heartbeat_timeout = "30s"  # a worker silent this long is killed
//! env = { LOG_LEVEL = "debug" }
//! pass_env = ["TAVILY_API_KEY"]
//! watch = true               # reload on save (default under `flw mcp`)
//! watch_paths = ["../lib"]   # more files or folders to watch
//! watch_ignore = ["data/**"] # globs, relative to each watched folder
//! reload_drain = "30s"       # calls on a replaced generation get this long
//!
//! [serve]                    # `flw serve` (see `crate::serve`)
//! listen = "127.0.0.1:8077"
//! token_file = "token.txt"   # required to listen beyond loopback
//! allowed_origins = ["https://app.example.com"]
//! ```

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod problems;

pub use problems::Problem;
use problems::Problems;

/// How a pool runs calls in its processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One call at a time per process; a cancelled call's process is replaced.
    #[default]
    Isolated,
    /// Many concurrent calls per process (async tools).
    Shared,
}

impl Mode {
    /// `isolated` or `shared`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Isolated => "isolated",
            Mode::Shared => "shared",
        }
    }
}

/// Everything about one pool, with paths resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// The pool's name (the table name, or the script's stem).
    pub name: String,
    /// Absolute path of the worker script.
    pub script: PathBuf,
    /// Concurrency mode.
    pub mode: Mode,
    /// Workers kept running even when idle.
    pub min_workers: usize,
    /// Most workers at once; more are started while calls wait.
    pub max_workers: usize,
    /// A worker beyond `min_workers` idle this long is stopped.
    pub idle_timeout: Duration,
    /// How Python workers are started.
    pub spawn: Spawn,
    /// Concurrent calls per process in `shared` mode.
    pub max_concurrency: usize,
    /// Calls that may wait for a free worker before `overloaded`.
    pub queue: usize,
    /// Time a cancelled call gets to stop on its own before SIGTERM.
    pub cancel_grace: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Deadline of every call, unless the caller gives one.
    pub call_timeout: Option<Duration>,
    /// Time a worker has to complete its handshake.
    pub handshake_timeout: Duration,
    /// Consecutive failed starts or crashes after which a slot gives up.
    pub max_restarts: u32,
    /// Time between heartbeats to each worker.
    pub heartbeat_interval: Duration,
    /// A worker that has answered no heartbeat for this long is killed as
    /// unresponsive.
    pub heartbeat_timeout: Duration,
    /// Variables set for the worker.
    pub env: EnvVars,
    /// Variables passed through from flw's environment.
    pub pass_env: Vec<String>,
    /// The interpreter, e.g. `python3`.
    pub interpreter: Option<PathBuf>,
    /// Whether to reload the pool when its files change; `None` leaves it
    /// to the command (on under `flw mcp`).
    pub watch: Option<bool>,
    /// Files or folders watched besides the script's folder.
    pub watch_paths: Vec<PathBuf>,
    /// Globs of paths not to watch, besides the built-in caches.
    pub watch_ignore: Vec<String>,
    /// Time calls on a replaced generation get to finish before they are
    /// stopped with `superseded`.
    pub reload_drain: Duration,
}

impl PoolConfig {
    /// The defaults for a script named on the command line.
    pub fn for_script(script: &Path) -> Result<PoolConfig, ConfigError> {
        Ok(PoolConfig::with_defaults(resolve_script(
            script, None, &RealFiles,
        )?))
    }

    /// The defaults for a script already resolved.
    fn with_defaults(script: PathBuf) -> PoolConfig {
        let name = script
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "worker".into());
        let mode = default_mode(&script);
        PoolConfig {
            name,
            script,
            mode,
            min_workers: 1,
            max_workers: default_max_workers(mode),
            idle_timeout: Duration::from_secs(60),
            spawn: Spawn::Fork,
            max_concurrency: 256,
            queue: 10_000,
            cancel_grace: Duration::from_secs(1),
            kill_grace: Duration::from_secs(2),
            call_timeout: None,
            handshake_timeout: Duration::from_secs(10),
            max_restarts: 5,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(30),
            env: EnvVars::default(),
            pass_env: Vec::new(),
            interpreter: None,
            watch: None,
            watch_paths: Vec::new(),
            watch_ignore: Vec::new(),
            reload_drain: Duration::from_secs(30),
        }
    }
}

/// Variables set for a pool's workers. Their values may be secrets (an API
/// key), so `Debug` shows only the names: a config printed in a log line
/// leaks none.
#[derive(Clone, PartialEq, Default)]
pub struct EnvVars(pub Vec<(String, String)>);

impl std::fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| format!("{k}=<redacted>")))
            .finish()
    }
}

impl std::ops::Deref for EnvVars {
    type Target = Vec<(String, String)>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for EnvVars {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl FromIterator<(String, String)> for EnvVars {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        EnvVars(iter.into_iter().collect())
    }
}

/// How a pool's Python workers are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Spawn {
    /// Forked from a fork server that imported the SDK and the script once
    /// (Python; TypeScript workers are always exec'd).
    #[default]
    Fork,
    /// A fresh interpreter per worker.
    Exec,
}

/// The mode of a pool that does not set one: `isolated` for Python (a
/// forked worker costs about a megabyte, so each call can own a process),
/// `shared` for TypeScript and JavaScript (Node cannot fork a warm process,
/// and a fresh one costs about 40 MB and 50 ms).
pub fn default_mode(script: &Path) -> Mode {
    match crate::sdk::Language::of(script) {
        Ok(crate::sdk::Language::JavaScript | crate::sdk::Language::TypeScript) => Mode::Shared,
        _ => Mode::Isolated,
    }
}

/// Memory per isolated worker that the default `max_workers` budgets for.
pub const MEMORY_PER_WORKER: u64 = 16 << 20;

/// Most workers of a pool when `max_workers` is not set.
///
/// `isolated`: one per 16 MiB of the memory this process may use (RAM, or
/// its cgroup's limit when lower), between 4 and 1024 — 1024 on a 24 GiB
/// machine, 256 with 4 GiB. `shared`: one per core, at least 4 (each takes
/// `max_concurrency` calls).
pub fn default_max_workers(mode: Mode) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, NonZeroUsize::get);
    match mode {
        Mode::Shared => cores.max(4),
        Mode::Isolated => {
            let budget = usable_memory().unwrap_or(4 << 30) / MEMORY_PER_WORKER;
            usize::try_from(budget).unwrap_or(usize::MAX).clamp(4, 1024)
        }
    }
}

/// The memory this process may use: MemTotal, or a lower cgroup limit.
fn usable_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?
        .saturating_mul(1024);
    let limits = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ];
    let cgroup = limits
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|t| t.trim().parse::<u64>().ok())
        .min();
    Some(cgroup.map_or(total, |c| c.min(total)))
}

/// The whole file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Pools in file order of their names.
    pub pools: Vec<PoolConfig>,
    /// Calls in flight across all pools before new ones queue.
    pub max_in_flight: Option<usize>,
    /// Flows from the graph files `flows` names (checked against the
    /// pools' nodes when a run starts).
    pub flows: Vec<crate::graph::Document>,
    /// The `[serve]` table.
    pub serve: ServeConfig,
}

/// What a `flw serve` run of a client does when that client's connection
/// closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnDisconnect {
    /// The run goes on (its result can be fetched later).
    #[default]
    Continue,
    /// The run is cancelled through the kill path.
    Cancel,
}

/// The `[serve]` table of `flw.toml`: how `flw serve` listens, whom it
/// lets in and how much it takes. Command-line flags override it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// The address to listen on.
    pub listen: std::net::SocketAddr,
    /// A file holding the bearer token clients must send.
    pub token_file: Option<PathBuf>,
    /// Browser origins (`scheme://host[:port]`, or `:*` for any port) let
    /// in besides the loopback ones.
    pub allowed_origins: Vec<String>,
    /// `Host` names let in; empty: loopback names when listening on
    /// loopback, any otherwise.
    pub allowed_hosts: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Requests one client address may have in flight (runs started with
    /// `202` count until they end).
    pub client_limit: usize,
    /// Time a client has to send a request's headers, and then its whole
    /// body (a total deadline, not an idle one).
    pub client_timeout: Duration,
    /// Time calls in flight get to finish after SIGTERM or SIGINT.
    pub drain: Duration,
    /// Finished runs kept for `GET /v1/runs/ID`.
    pub runs_kept: usize,
    /// How long a finished run is kept.
    pub run_ttl: Duration,
    /// Events kept per run for `Last-Event-ID` resume.
    pub run_events: usize,
    /// What a run started with `202` does when its client disconnects.
    pub on_disconnect: OnDisconnect,
}

/// The port `flw serve` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 8077;

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            token_file: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            client_limit: 1024,
            client_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(30),
            runs_kept: 1000,
            run_ttl: Duration::from_secs(3600),
            run_events: 1024,
            on_disconnect: OnDisconnect::Continue,
        }
    }
}

/// A config file or CLI value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read (the OS error is the source, shown once
    /// by `{:#}`).
    #[error("cannot read the config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Bad content: every problem found, in file order, each with its
    /// place (one `FILE:LINE:COLUMN: message` line each).
    #[error("{}", problems::render(path, problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The problems, in file order.
        problems: Vec<Problem>,
    },
    /// A script that does not exist or cannot run.
    #[error("{0}")]
    Script(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    pools: BTreeMap<String, toml::Spanned<RawPool>>,
    max_in_flight: Option<NonZeroUsize>,
    #[serde(default)]
    flows: Vec<toml::Spanned<String>>,
    serve: Option<toml::Spanned<RawServe>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    listen: Option<toml::Spanned<String>>,
    token_file: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    max_body_bytes: Option<NonZeroUsize>,
    client_limit: Option<NonZeroUsize>,
    client_timeout: Option<Dur>,
    drain: Option<Dur>,
    runs_kept: Option<usize>,
    run_ttl: Option<Dur>,
    run_events: Option<NonZeroUsize>,
    on_disconnect: Option<OnDisconnect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    script: Option<toml::Spanned<String>>,
    mode: Option<Mode>,
    instances: Option<NonZeroUsize>,
    min_workers: Option<usize>,
    max_workers: Option<NonZeroUsize>,
    idle_timeout: Option<Dur>,
    spawn: Option<Spawn>,
    max_concurrency: Option<NonZeroUsize>,
    queue: Option<usize>,
    cancel_grace: Option<Dur>,
    kill_grace: Option<Dur>,
    call_timeout: Option<Dur>,
    handshake_timeout: Option<Dur>,
    max_restarts: Option<u32>,
    heartbeat_interval: Option<Dur>,
    heartbeat_timeout: Option<Dur>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    pass_env: Vec<String>,
    interpreter: Option<String>,
    watch: Option<bool>,
    #[serde(default)]
    watch_paths: Vec<toml::Spanned<String>>,
    #[serde(default)]
    watch_ignore: Vec<toml::Spanned<String>>,
    reload_drain: Option<Dur>,
}

/// A duration written as `"500ms"`, `"2s"`, `"1.5s"`, `"1m"`, or a number of seconds.
#[derive(Debug, Clone, Copy)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::Int(s) => cap(Duration::from_secs(s), &s.to_string()),
            Raw::Float(s) => Duration::try_from_secs_f64(s)
                .map_err(|e| e.to_string())
                .and_then(|d| cap(d, &s.to_string())),
            Raw::Text(t) => parse_duration(&t),
        };
        parsed.map(Dur).map_err(serde::de::Error::custom)
    }
}

/// Parses `"250ms"`, `"2s"`, `"1.5s"`, `"3m"`, `"1h"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!("invalid duration {text:?}: write e.g. \"500ms\", \"2s\" or \"1m\"")
    })?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {other:?} (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs)
        .map_err(|e| format!("invalid duration {text:?}: {e}"))
        .and_then(|d| cap(d, text))
}

/// The longest duration flw accepts anywhere: one year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

fn cap(d: Duration, text: &str) -> Result<Duration, String> {
    if d > MAX_DURATION {
        Err(format!("invalid duration {text:?}: longer than a year"))
    } else {
        Ok(d)
    }
}

/// What reading a config asks of the file system. [`Config::parse`] uses
/// the real one ([`RealFiles`]); [`Config::parse_with`] takes another, e.g.
/// the fuzz target's, which stands for a folder where every file exists.
pub trait ConfigFiles {
    /// Whether `path` is a regular file (a worker script).
    fn is_file(&self, path: &Path) -> bool;
    /// Whether `path` exists (a watch path).
    fn exists(&self, path: &Path) -> bool;
    /// The text of a graph file.
    fn read_to_string(&self, path: &Path) -> std::io::Result<String>;
    /// The names of the files in `path` when it is a folder (a script
    /// named by its folder), else `None`.
    fn folder_files(&self, path: &Path) -> Option<Vec<String>>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFiles;

impl ConfigFiles for RealFiles {
    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn read_to_string(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn folder_files(&self, path: &Path) -> Option<Vec<String>> {
        let entries = std::fs::read_dir(path).ok()?;
        Some(
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
        )
    }
}

impl Config {
    /// Reads and checks `path`; relative paths inside resolve against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses `text` as the content of `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse_with(text, path, &RealFiles)
    }

    /// Parses `text` as the content of `path`, asking `files` whether the
    /// files it names exist and for the graph files' text. Every problem
    /// found is reported, in file order.
    pub fn parse_with(
        text: &str,
        path: &Path,
        files: &dyn ConfigFiles,
    ) -> Result<Config, ConfigError> {
        let mut problems = Problems::new(text);
        let Some((raw, refused)) = problems.read::<RawFile>() else {
            return Err(problems.into_error(path));
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut pools = Vec::new();
        let no_pools = raw.pools.is_empty();
        for (name, spanned) in raw.pools {
            let refused = |key: &str| refused.has(&["pools", &name, key]);
            if let Some(cfg) = pool_config(&name, spanned, base, files, &refused, &mut problems) {
                pools.push(cfg);
            }
        }
        if no_pools && !refused.has(&["pools"]) {
            problems.at(
                0,
                "no pools: add a [pools.NAME] table with a script, e.g. [pools.agent] script = \"agent.py\"",
            );
        }
        let mut flows = Vec::new();
        for f in &raw.flows {
            let file = base.join(f.get_ref());
            let doc = files
                .read_to_string(&file)
                .map_err(|e| format!("cannot read graph file {}: {e}", file.display()))
                .and_then(|text| {
                    serde_json::from_str(&text)
                        .map_err(|e| format!("graph file {} is not JSON: {e}", file.display()))
                })
                .and_then(|v| {
                    crate::graph::Document::parse(&v, &format!("graph file {}", f.get_ref()))
                        .map_err(|e| e.to_string())
                });
            match doc {
                Ok(doc) => flows.push(doc),
                Err(e) => problems.at(f.span().start, e),
            }
        }
        let serve = match raw.serve {
            Some(spanned) => serve_config(spanned.into_inner(), base, &mut problems),
            None => ServeConfig::default(),
        };
        let config = Config {
            pools,
            max_in_flight: raw.max_in_flight.map(NonZeroUsize::get),
            flows,
            serve,
        };
        problems.result(path, config)
    }
}

/// One pool with its defaults, noting each problem; `None` when it has
/// one. `refused(key)` says whether the key's value was refused already
/// (a check that depends on it is then skipped).
fn pool_config(
    name: &str,
    spanned: toml::Spanned<RawPool>,
    base: &Path,
    files: &dyn ConfigFiles,
    refused: &dyn Fn(&str) -> bool,
    problems: &mut Problems<'_>,
) -> Option<PoolConfig> {
    let start = spanned.span().start;
    let p = spanned.into_inner();
    let before = problems.count();
    if !flw_protocol::is_valid_tool_name(name) {
        problems.at(
            start,
            format!("pool name {name:?} may only use A-Z a-z 0-9 _ - ."),
        );
    }
    let script = match &p.script {
        Some(s) => resolve_script(Path::new(s.get_ref()), Some(base), files)
            .map_err(|e| problems.at(s.span().start, e.to_string()))
            .ok(),
        None => {
            if !refused("script") {
                problems.at(
                    start,
                    format!("pool {name} has no script: add script = \"agent.py\" (relative to this file)"),
                );
            }
            None
        }
    };
    // The checks below judge the pool's own values; with no script, the
    // defaults that depend on its language are unknown.
    let mut cfg = PoolConfig::with_defaults(script.clone().unwrap_or_default());
    cfg.name = name.to_string();
    if let Some(m) = p.mode {
        cfg.mode = m;
        cfg.max_workers = default_max_workers(m);
    }
    let counts = ["instances", "min_workers", "max_workers"];
    if let Err(e) = workers(&mut cfg, &p) {
        if !counts.iter().any(|k| refused(k)) {
            problems.at(start, e);
        }
    }
    if let Some(s) = p.spawn {
        let python = crate::sdk::Language::of(&cfg.script) == Ok(crate::sdk::Language::Python);
        if s == Spawn::Fork && !python && script.is_some() {
            problems.at(
                start,
                format!("pool {name}: spawn = \"fork\" applies to Python scripts only (Node cannot fork a warm process); remove it"),
            );
        }
        cfg.spawn = s;
    }
    if let Some(n) = p.max_concurrency {
        cfg.max_concurrency = n.get();
    }
    if let Some(n) = p.queue {
        cfg.queue = n;
    }
    if let Some(d) = p.cancel_grace {
        cfg.cancel_grace = d.0;
    }
    if let Some(d) = p.kill_grace {
        cfg.kill_grace = d.0;
    }
    cfg.call_timeout = p.call_timeout.map(|d| d.0);
    if let Some(d) = p.handshake_timeout {
        cfg.handshake_timeout = d.0;
    }
    if let Some(n) = p.max_restarts {
        cfg.max_restarts = n;
    }
    if let Some(d) = p.heartbeat_interval {
        if d.0.is_zero() {
            problems.at(start, "heartbeat_interval must be more than 0");
        }
        cfg.heartbeat_interval = d.0;
    }
    if let Some(d) = p.heartbeat_timeout {
        cfg.heartbeat_timeout = d.0;
    }
    let beats = ["heartbeat_interval", "heartbeat_timeout"];
    if cfg.heartbeat_timeout < cfg.heartbeat_interval && !beats.iter().any(|k| refused(k)) {
        problems.at(
            start,
            format!(
                "heartbeat_timeout ({:?}) must be at least heartbeat_interval ({:?})",
                cfg.heartbeat_timeout, cfg.heartbeat_interval
            ),
        );
    }
    cfg.env = p.env.into_iter().collect();
    cfg.pass_env = p.pass_env;
    cfg.interpreter = p.interpreter.map(|i| {
        let ip = PathBuf::from(&i);
        if ip.components().count() > 1 && ip.is_relative() {
            base.join(ip)
        } else {
            ip
        }
    });
    cfg.watch = p.watch;
    for w in p.watch_paths {
        let path =
            std::path::absolute(base.join(w.get_ref())).unwrap_or_else(|_| base.join(w.get_ref()));
        if !files.exists(&path) {
            problems.at(
                w.span().start,
                format!("watch path {} not found", path.display()),
            );
        }
        cfg.watch_paths.push(path);
    }
    for g in p.watch_ignore {
        if let Err(e) = globset::Glob::new(g.get_ref()) {
            problems.at(g.span().start, format!("bad glob in watch_ignore: {e}"));
        }
        cfg.watch_ignore.push(g.into_inner());
    }
    if let Some(d) = p.reload_drain {
        cfg.reload_drain = d.0;
    }
    (problems.count() == before && script.is_some()).then_some(cfg)
}

/// Applies `instances`, `min_workers`, `max_workers` and `idle_timeout`
/// to `cfg`.
fn workers(cfg: &mut PoolConfig, p: &RawPool) -> Result<(), String> {
    if let Some(n) = p.instances {
        if p.min_workers.is_some() || p.max_workers.is_some() {
            return Err(format!(
                "pool {}: instances = {n} cannot be combined with min_workers or max_workers; \
                 instances = N is the same as min_workers = N and max_workers = N",
                cfg.name
            ));
        }
        cfg.min_workers = n.get();
        cfg.max_workers = n.get();
    }
    if let Some(n) = p.max_workers {
        cfg.max_workers = n.get();
    }
    if let Some(n) = p.min_workers {
        cfg.min_workers = n;
        if p.max_workers.is_none() {
            cfg.max_workers = cfg.max_workers.max(n);
        }
    }
    if cfg.min_workers > cfg.max_workers {
        return Err(format!(
            "pool {}: min_workers ({}) is more than max_workers ({})",
            cfg.name, cfg.min_workers, cfg.max_workers
        ));
    }
    if let Some(d) = p.idle_timeout {
        cfg.idle_timeout = d.0;
    }
    Ok(())
}

/// The `[serve]` table with its defaults; `base` is the config's folder.
fn serve_config(raw: RawServe, base: &Path, problems: &mut Problems<'_>) -> ServeConfig {
    let mut c = ServeConfig::default();
    if let Some(l) = raw.listen {
        match parse_listen(l.get_ref()) {
            Ok(listen) => c.listen = listen,
            Err(e) => problems.at(l.span().start, e),
        }
    }
    c.token_file = raw.token_file.map(|f| base.join(f));
    c.allowed_origins = raw.allowed_origins;
    c.allowed_hosts = raw.allowed_hosts;
    if let Some(n) = raw.max_body_bytes {
        c.max_body_bytes = n.get();
    }
    if let Some(n) = raw.client_limit {
        c.client_limit = n.get();
    }
    if let Some(d) = raw.client_timeout {
        c.client_timeout = d.0;
    }
    if let Some(d) = raw.drain {
        c.drain = d.0;
    }
    if let Some(n) = raw.runs_kept {
        c.runs_kept = n;
    }
    if let Some(d) = raw.run_ttl {
        c.run_ttl = d.0;
    }
    if let Some(n) = raw.run_events {
        c.run_events = n.get();
    }
    if let Some(o) = raw.on_disconnect {
        c.on_disconnect = o;
    }
    c
}

/// Parses a listen address: `HOST:PORT`, `:PORT` (loopback) or `PORT`.
pub fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "invalid listen address {text:?}: write HOST:PORT, e.g. \"127.0.0.1:{DEFAULT_PORT}\" or \"0.0.0.0:{DEFAULT_PORT}\""
        )
    };
    if let Ok(port) = t.trim_start_matches(':').parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(a) = t.parse() {
        return Ok(a);
    }
    let (host, port) = t.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    match host {
        "localhost" => Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        _ => Err(bad()),
    }
}

/// Makes `script` absolute (against `base` or the current directory) and
/// checks that it is a file flw knows how to run.
fn resolve_script(
    script: &Path,
    base: Option<&Path>,
    files: &dyn ConfigFiles,
) -> Result<PathBuf, ConfigError> {
    let joined = match base {
        Some(b) if script.is_relative() => b.join(script),
        _ => script.to_path_buf(),
    };
    let abs = std::path::absolute(&joined).unwrap_or(joined);
    if let Some(names) = files.folder_files(&abs) {
        return Err(ConfigError::Script(folder_given(script, &abs, names)));
    }
    if !files.is_file(&abs) {
        return Err(ConfigError::Script(format!(
            "worker script {} not found",
            abs.display()
        )));
    }
    crate::sdk::Language::of(&abs).map_err(|e| ConfigError::Script(e.to_string()))?;
    Ok(abs)
}

/// Why a folder is not a worker script, with the scripts in it to name
/// instead (as paths under `given`, the folder as written).
fn folder_given(given: &Path, abs: &Path, mut names: Vec<String>) -> String {
    names.retain(|n| crate::sdk::Language::of(Path::new(n)).is_ok());
    names.sort();
    let shown: Vec<String> = names
        .iter()
        .take(5)
        .map(|n| given.join(n).display().to_string())
        .collect();
    let hint = match shown.len() {
        0 => "it holds no .py, .js, .mjs, .ts or .mts file".to_string(),
        1 => format!("name the script in it: {}", shown[0]),
        _ => format!(
            "name one of the scripts in it: {}{}",
            shown.join(", "),
            if names.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        ),
    };
    format!("{} is a folder, not a worker script: {hint}", abs.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        let dir = std::env::temp_dir().join(format!("flw-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("agent.py"), "").unwrap();
        Config::parse(text, &dir.join("flw.toml")).map_err(|e| {
            let s = e.to_string();
            s[s.find("flw.toml").unwrap()..].to_string()
        })
    }

    #[test]
    fn full_pool_parses_with_paths_relative_to_the_file() {
        let c = parse(
            "[pools.agent]\nscript = \"agent.py\"\nmode = \"shared\"\ninstances = 3\ncancel_grace = \"250ms\"\nenv = { A = \"1\" }\n",
        )
        .unwrap();
        let p = &c.pools[0];
        assert_eq!(p.name, "agent");
        assert!(p.script.is_absolute() && p.script.ends_with("agent.py"));
        assert_eq!(p.mode, Mode::Shared);
        assert_eq!((p.min_workers, p.max_workers), (3, 3));
        assert_eq!(p.cancel_grace, Duration::from_millis(250));
        assert_eq!(p.env.0, vec![("A".to_string(), "1".to_string())]);
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        let e = parse("[pools.agent]\nscript = \"agent.py\"\nmodes = \"shared\"\n").unwrap_err();
        assert!(e.starts_with("flw.toml:3:1: unknown field `modes`"), "{e}");
    }

    #[test]
    fn bad_values_name_their_line() {
        let e = parse("[pools.agent]\nscript = \"agent.py\"\nmode = \"fast\"\n").unwrap_err();
        assert!(
            e.starts_with("flw.toml:3:8:") && e.contains("isolated"),
            "{e}"
        );
        let e = parse("[pools.agent]\nscript = \"agent.py\"\ninstances = 0\n").unwrap_err();
        assert!(e.starts_with("flw.toml:3:13:"), "{e}");
        let e = parse("[pools.agent]\nscript = \"agent.py\"\ncancel_grace = \"2 weeks\"\n")
            .unwrap_err();
        assert!(
            e.starts_with("flw.toml:3:16:") && e.contains("unknown unit"),
            "{e}"
        );
    }

    #[test]
    fn every_problem_is_reported_in_file_order() {
        // serde reads a table's keys sorted (cancel_grace before mode) and
        // stops at the first refusal: both must still come, in file order.
        let e = parse(
            "[pools.agent]\nscript = \"agent.py\"\nmode = \"fast\"\ncancel_grace = \"2 weeks\"\n",
        )
        .unwrap_err();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 2, "{e}");
        assert!(
            lines[0].starts_with("flw.toml:3:8: unknown variant `fast`"),
            "{e}"
        );
        assert!(lines[1].ends_with("flw.toml:4:16: invalid duration \"2 weeks\": unknown unit \"weeks\" (use ms, s, m or h)"), "{e}");
    }

    #[test]
    fn problems_of_every_kind_and_table_come_together() {
        let e = parse(
            "max_in_flight = 0\n\
             [pools.b]\nscript = \"nope.py\"\nmodes = 1\nmin_workers = 5\nmax_workers = 2\n\
             [pools.a]\nmode = \"shared\"\n\
             [serve]\nlisten = \"nowhere\"\nport = 3\n",
        )
        .unwrap_err();
        let places: Vec<&str> = e
            .lines()
            .map(|l| {
                l.rsplit("flw.toml:")
                    .next()
                    .unwrap()
                    .split(": ")
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            places,
            ["1:17", "2:1", "3:10", "4:1", "7:1", "10:10", "11:1"],
            "{e}"
        );
        for what in [
            "nonzero",
            "pool b: min_workers (5) is more than max_workers (2)",
            "nope.py not found",
            "unknown field `modes`",
            "pool a has no script",
            "invalid listen address",
            "unknown field `port`",
        ] {
            assert!(e.contains(what), "{what}: {e}");
        }
    }

    #[test]
    fn a_file_without_pools_says_so_beside_its_other_problems() {
        let e = parse("max_in_flight = 0\n[pool.agent]\nscript = \"agent.py\"\n").unwrap_err();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(lines[0].ends_with("flw.toml:1:1: no pools: add a [pools.NAME] table with a script, e.g. [pools.agent] script = \"agent.py\""), "{e}");
        assert!(
            lines[1].contains("flw.toml:1:17: invalid value: integer `0`"),
            "{e}"
        );
        assert!(
            lines[2].contains("flw.toml:2:2: unknown field `pool`"),
            "{e}"
        );
        // A `pools` that is not a table is its own problem.
        let e = parse("pools = 3\n").unwrap_err();
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn a_refused_value_is_not_judged_again_as_its_default() {
        // With heartbeat_interval refused, its default (5s) is not what the
        // file says: the timeout is not compared with it.
        let e = parse("[pools.agent]\nscript = \"agent.py\"\nheartbeat_interval = \"x\"\nheartbeat_timeout = \"1s\"\n")
            .unwrap_err();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("flw.toml:3:22: invalid duration"), "{e}");
        let e = parse("[pools.agent]\nscript = 3\n").unwrap_err();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("flw.toml:2:10:"), "{e}");
    }

    #[test]
    fn watch_settings_parse_and_bad_ones_name_their_line() {
        let c = parse(
            "[pools.agent]\nscript = \"agent.py\"\nwatch = false\nwatch_paths = [\".\"]\nwatch_ignore = [\"data/**\"]\nreload_drain = \"2s\"\n",
        )
        .unwrap();
        let p = &c.pools[0];
        assert_eq!(p.watch, Some(false));
        assert_eq!(p.watch_paths.len(), 1);
        assert!(p.watch_paths[0].is_absolute());
        assert_eq!(p.watch_ignore, vec!["data/**".to_string()]);
        assert_eq!(p.reload_drain, Duration::from_secs(2));
        let e = parse("[pools.agent]\nscript = \"agent.py\"\nwatch_paths = [\"nowhere\"]\n")
            .unwrap_err();
        assert!(
            e.starts_with("flw.toml:3:16:") && e.contains("not found"),
            "{e}"
        );
        let e =
            parse("[pools.agent]\nscript = \"agent.py\"\nwatch_ignore = [\"a[\"]\n").unwrap_err();
        assert!(e.starts_with("flw.toml:3:17:") && e.contains("glob"), "{e}");
    }

    #[test]
    fn heartbeat_settings_parse_and_a_timeout_below_the_interval_is_refused() {
        let c = parse("[pools.agent]\nscript = \"agent.py\"\nheartbeat_interval = \"200ms\"\nheartbeat_timeout = \"2s\"\n").unwrap();
        assert_eq!(c.pools[0].heartbeat_interval, Duration::from_millis(200));
        assert_eq!(c.pools[0].heartbeat_timeout, Duration::from_secs(2));
        let e = parse("[pools.agent]\nscript = \"agent.py\"\nheartbeat_timeout = \"1s\"\n")
            .unwrap_err();
        assert!(
            e.starts_with("flw.toml:1:1:") && e.contains("at least heartbeat_interval"),
            "{e}"
        );
        let e =
            parse("[pools.agent]\nscript = \"agent.py\"\nheartbeat_interval = 0\n").unwrap_err();
        assert!(e.contains("more than 0"), "{e}");
    }

    #[test]
    fn a_folder_given_as_the_script_names_the_scripts_in_it() {
        let dir = std::env::temp_dir().join(format!("flw-config-folder-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in ["b.py", "a.ts", "notes.txt"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let e = PoolConfig::for_script(&dir).unwrap_err().to_string();
        let listed = format!(
            "{}, {}",
            dir.join("a.ts").display(),
            dir.join("b.py").display()
        );
        assert_eq!(
            e,
            format!(
                "{} is a folder, not a worker script: name one of the scripts in it: {listed}",
                dir.display()
            )
        );
        let e = PoolConfig::for_script(&dir.join("sub"))
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with(
                "is a folder, not a worker script: it holds no .py, .js, .mjs, .ts or .mts file"
            ),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_script_is_reported_at_its_line() {
        let e = parse("[pools.agent]\nscript = \"nope.py\"\n").unwrap_err();
        assert!(
            e.starts_with("flw.toml:2:10:") && e.contains("nope.py not found"),
            "{e}"
        );
    }

    #[test]
    fn serve_table_parses_and_bad_values_name_their_line() {
        let c = parse("[pools.a]\nscript = \"agent.py\"\n[serve]\nlisten = \":9000\"\ntoken_file = \"t.txt\"\ndrain = \"2s\"\non_disconnect = \"cancel\"\n").unwrap();
        assert_eq!(c.serve.listen, "127.0.0.1:9000".parse().unwrap());
        assert!(c.serve.token_file.unwrap().ends_with("t.txt"));
        assert_eq!(c.serve.drain, Duration::from_secs(2));
        assert_eq!(c.serve.on_disconnect, OnDisconnect::Cancel);
        let e =
            parse("[pools.a]\nscript = \"agent.py\"\n[serve]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(
            e.starts_with("flw.toml:4:10: invalid listen address"),
            "{e}"
        );
        let e = parse("[pools.a]\nscript = \"agent.py\"\n[serve]\nport = 1\n").unwrap_err();
        assert!(e.contains("unknown field `port`"), "{e}");
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:1").unwrap(),
            "0.0.0.0:1".parse().unwrap()
        );
        assert_eq!(parse_listen("[::1]:2").unwrap(), "[::1]:2".parse().unwrap());
        assert_eq!(
            parse_listen("localhost:3").unwrap(),
            "127.0.0.1:3".parse().unwrap()
        );
        assert!(parse_listen("example.com:80").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("fast").is_err());
        let e = parse_duration("10000000000000000000s").unwrap_err();
        assert!(e.contains("longer than a year"), "{e}");
    }
}
