//! (k) HTTP: `echo` over HTTP with 256 calls in flight, through `flw serve`
//! (its MCP endpoint and its JSON API) and through the MCP SDK's Streamable
//! HTTP server (MCPServer, formerly FastMCP, under uvicorn).
//!
//! Unlike the other workloads the servers listen on TCP: each is started
//! with a port of 0 and says on stderr where it listens; the driver's own
//! HTTP/1.1 client ([`crate::http`]) loads it.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use super::{progress, quantile, Ctx, Fmt, PeerResult, Row, Section, Workload};
use crate::http::{self, Api, Target, MCP_VERSION};
use crate::peers::{Family, FlwVariant, Peer, ENV_REMOVED, SHARED_1};
use crate::procfs;
use crate::server::log_tail;

/// Connections, each with one call in flight.
pub const CONNECTIONS: usize = 256;
/// The SDK peer's script, in bench/peers.
const SDK_SCRIPT: &str = "mcp_sdk_http.py";
/// flw serve's JSON API path of the echo tool.
const FLW_JSON_PATH: &str = "/v1/tools/echo/call";
/// The SDK's column.
const SDK: &str = "FastMCP (MCP SDK MCPServer)";

/// A server listening on TCP, in its own process group, stderr to a log.
struct Listener {
    child: Child,
    pid: i32,
    log: PathBuf,
    addr: SocketAddr,
}

impl Listener {
    /// Starts `program args` and waits up to 30 s for its
    /// `listening on http://HOST:PORT` line on stderr.
    fn start(program: &Path, args: &[String], log: &Path) -> Result<Listener, String> {
        let err = File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut cmd = Command::new(program);
        for k in ENV_REMOVED {
            cmd.env_remove(k);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let pid = child.id() as i32;
        let t0 = Instant::now();
        let fail = |child: &mut Child, what: String| {
            procfs::kill_group(pid);
            let _ = child.wait();
            let tail = log_tail(log, 3).replace('\n', " | ");
            format!("{what} (stderr: {tail})")
        };
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(addr) = listening(&text) {
                return Ok(Listener {
                    child,
                    pid,
                    log: log.to_path_buf(),
                    addr,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(fail(
                    &mut child,
                    format!("exited ({status}) before listening"),
                ));
            }
            if t0.elapsed() > Duration::from_secs(30) {
                return Err(fail(&mut child, "not listening after 30 s".into()));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the server is still running.
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the server's group and tree.
    fn stop(mut self) {
        let tree = procfs::tree_pids(self.pid);
        procfs::kill_group(self.pid);
        for p in tree {
            procfs::kill(p);
        }
        let _ = self.child.wait();
    }
}

/// The address in the first `listening on http://HOST:PORT` of `log`.
fn listening(log: &str) -> Option<SocketAddr> {
    let (_, rest) = log.split_once("listening on http://")?;
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '/')
        .collect();
    addr.parse().ok()
}

fn peer(label: &str, family: Family, variant: Option<FlwVariant>) -> Peer {
    Peer {
        label: label.into(),
        family,
        variant,
    }
}

/// Preflight, then the load: one column.
fn measure(
    ctx: &Ctx,
    server: &mut Listener,
    p: &Peer,
    target: &Target,
    (warmup, window): (Duration, Duration),
) -> PeerResult {
    progress(&format!(
        "http: {} (http://{}{})",
        p.label, target.addr, target.path
    ));
    let mut r = PeerResult::new(p);
    match http::call_once(target, 0, Duration::from_secs(30)) {
        Ok(kind) => progress(&format!("  preflight call answered: {kind}")),
        Err(e) => {
            ctx.failures.fetch_add(1, Ordering::Relaxed);
            progress(&format!(
                "  {} failed: preflight call: {e}; stderr log: {}",
                p.label,
                server.log.display()
            ));
            r.failed = 1;
            r.notes.push(format!("the first call failed: {e}"));
            return r;
        }
    }
    let stats = http::run(target, CONNECTIONS, warmup, window, server.pid);
    if let Some(rss) = procfs::rss_bytes(server.pid) {
        r.set("rss_after", rss as f64);
    }
    let mut lat = stats.latencies_ns.clone();
    lat.sort_unstable();
    r.failed = stats.errors;
    r.set("connections", CONNECTIONS as f64);
    r.set("calls", stats.calls as f64);
    if stats.errors == 0 {
        // A run with a failed call has no numbers: they would measure a
        // server that does not work.
        r.set("calls_per_s", stats.rate());
        if let (Some(p50), Some(p99)) = (quantile(&lat, 0.5), quantile(&lat, 0.99)) {
            r.set("p50_ms", p50 as f64 / 1e6);
            r.set("p99_ms", p99 as f64 / 1e6);
        }
        r.set("cores", stats.server_cores());
        r.set("cpu_us_per_call", stats.server_us_per_call());
        r.set("main_cpu_us_per_call", stats.root_us_per_call());
        r.set("driver_cores", stats.driver_cores());
    }
    if let Some(e) = &stats.first_error {
        r.notes.push(format!("first failure: {e}"));
    }
    if stats.connect_time > Duration::from_millis(200) {
        // Loopback connects take microseconds; a second means a SYN was
        // dropped and sent again (the accept queue was full).
        r.notes.push(format!(
            "opening the {CONNECTIONS} connections took {:.2} s (before the warm-up; a loopback \
             connect that takes 1 s is a SYN the server's full accept queue dropped, sent again)",
            stats.connect_time.as_secs_f64()
        ));
    }
    if stats.reconnects > 0 {
        r.notes.push(format!(
            "{} connections closed by the server and opened again",
            stats.reconnects
        ));
    }
    let kinds: Vec<String> = stats
        .kinds
        .iter()
        .map(|((ct, fr), n)| format!("{ct} with {fr} ×{}", crate::report::thousands(*n as f64)))
        .collect();
    r.notes.push(format!("responses: {}", kinds.join(", ")));
    if !server.alive() {
        r.notes.push("the server exited during the run".into());
        ctx.failures.fetch_add(1, Ordering::Relaxed);
    }
    progress(&format!(
        "  {:.0} calls/s, p50 {:.1} ms, p99 {:.1} ms, server {:.2} cores ({:.0} µs per call, \
         main process {:.0} µs), driver {:.2} cores{}",
        stats.rate(),
        quantile(&lat, 0.5).unwrap_or(0) as f64 / 1e6,
        quantile(&lat, 0.99).unwrap_or(0) as f64 / 1e6,
        stats.server_cores(),
        stats.server_us_per_call(),
        stats.root_us_per_call(),
        stats.driver_cores(),
        if stats.errors > 0 {
            format!(
                ", {} FAILED: {}",
                stats.errors,
                stats.first_error.as_deref().unwrap_or("")
            )
        } else {
            String::new()
        }
    ));
    r
}

/// Starts a listener for `peers` (one server, several columns) or marks them skipped.
fn start(
    ctx: &Ctx,
    peers: &[&Peer],
    program: &Path,
    args: &[String],
    slug: &str,
) -> Result<Listener, Vec<PeerResult>> {
    if !program.exists() {
        let why = format!("{} not found", ctx.paths.rel(program));
        return Err(peers
            .iter()
            .map(|p| PeerResult::skipped(p, why.clone()))
            .collect());
    }
    let log = ctx.paths.tmp.join(format!("http-{slug}.log"));
    Listener::start(program, args, &log).map_err(|e| {
        ctx.failures.fetch_add(1, Ordering::Relaxed);
        progress(&format!(
            "  {slug} failed: {e}; stderr log: {}",
            log.display()
        ));
        peers
            .iter()
            .map(|p| PeerResult::skipped(p, e.clone()))
            .collect()
    })
}

/// `a ÷ b` as the report writes ratios.
fn times(a: f64, b: f64) -> String {
    let r = a / b;
    if r >= 10.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.2}×")
    }
}

/// Runs the http workload.
pub fn run(ctx: &Ctx) -> Section {
    let warmup = Duration::from_secs_f64(ctx.pick(1.0, 0.2));
    let window = Duration::from_secs_f64(ctx.pick(5.0, 0.5));
    let phases = (warmup, window);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut results = Vec::new();
    if ctx.families.contains(&Family::Flw) {
        // flw serve with its defaults (the script on the command line), then
        // with the variant (b) found fastest for echo at 256 in flight.
        for variant in [None, Some(SHARED_1)] {
            let base = variant.map_or("flw serve".to_string(), |v| {
                format!("flw serve {} ×{}", v.mode, v.instances)
            });
            let mcp = peer(&format!("{base}: /mcp"), Family::Flw, variant);
            let api = peer(&format!("{base}: JSON API"), Family::Flw, variant);
            let script = ctx.paths.script("flw_tools.py");
            let mut args = vec!["serve".to_string()];
            match variant {
                None => args.push(script.display().to_string()),
                Some(v) => {
                    let cfg = ctx.paths.tmp.join(format!("http-{}.toml", mcp.slug()));
                    if let Err(e) = std::fs::write(&cfg, v.config(&script)) {
                        let why = format!("cannot write {}: {e}", cfg.display());
                        results.push(PeerResult::skipped(&mcp, why.clone()));
                        results.push(PeerResult::skipped(&api, why));
                        continue;
                    }
                    args.extend(["--config".to_string(), cfg.display().to_string()]);
                }
            }
            args.extend(["--listen".to_string(), "127.0.0.1:0".to_string()]);
            progress(&format!("http: starting {base}"));
            let slug = mcp.slug();
            match start(ctx, &[&mcp, &api], &ctx.paths.flw(), &args, &slug) {
                Ok(mut server) => {
                    let addr = server.addr;
                    let t = Target::new(addr, "/mcp", Api::Mcp, "echo", "text");
                    results.push(measure(ctx, &mut server, &mcp, &t, phases));
                    let t = Target::new(addr, FLW_JSON_PATH, Api::Json, "echo", "text");
                    results.push(measure(ctx, &mut server, &api, &t, phases));
                    server.stop();
                }
                Err(skipped) => results.extend(skipped),
            }
        }
    }
    if ctx.families.contains(&Family::Sdk) {
        let sdk = peer(SDK, Family::Sdk, None);
        progress("http: starting the MCP SDK's Streamable HTTP server");
        let args = vec![ctx.paths.script(SDK_SCRIPT).display().to_string()];
        match start(ctx, &[&sdk], &ctx.paths.sdk_python(), &args, "sdk") {
            Ok(mut server) => {
                let t = Target::new(server.addr, "/mcp", Api::Mcp, "echo", "text");
                results.push(measure(ctx, &mut server, &sdk, &t, phases));
                server.stop();
            }
            Err(skipped) => results.extend(skipped),
        }
    }
    // flw ÷ FastMCP, in the table and under it.
    let mut notes = Vec::new();
    let sdk_v = results
        .iter()
        .find(|r| r.peer.label == SDK)
        .and_then(|r| Some((r.get("calls_per_s")?, r.get("p99_ms")?)));
    if let Some((sdk_rate, sdk_p99)) = sdk_v {
        for r in results.iter_mut().filter(|r| r.peer.family == Family::Flw) {
            let (Some(rate), Some(p99)) = (r.get("calls_per_s"), r.get("p99_ms")) else {
                continue;
            };
            r.set("vs_sdk.calls_per_s", rate / sdk_rate);
            r.set("vs_sdk.p99", p99 / sdk_p99);
            notes.push(format!(
                "**{} ÷ FastMCP: {} the calls/s** ({} vs {}), p99 {} ({:.1} ms vs {:.1} ms).",
                r.peer.label,
                times(rate, sdk_rate),
                crate::report::thousands(rate),
                crate::report::thousands(sdk_rate),
                times(p99, sdk_p99),
                p99,
                sdk_p99
            ));
        }
    }
    Section {
        workload: Workload::Http,
        title: "(k) HTTP: echo with 256 connections".into(),
        about: vec![
            format!(
                "`echo(\"hello <n>\")` over HTTP/1.1 from {CONNECTIONS} keep-alive connections, each \
                 with one POST in flight (each response sends the connection's next request), \
                 driven by one driver thread on epoll: {:.1} s warm-up, {:.0} s measured. Latency \
                 runs from the write of a request to its parsed answer; every answer is checked \
                 (each call echoes a value of its own), and a failed or wrong answer fails the run \
                 and leaves the column without numbers. \"Cores used\" and \"driver cores\" are as \
                 in (b); \"server CPU per call\" is the server tree's CPU time in the window over the \
                 calls answered in it (less sensitive to a busy machine than calls/s), and \"the \
                 main process\" the part of it spent outside flw's worker processes (all of it for \
                 FastMCP). The RSS is the main process's, read after the drain (for flw's JSON \
                 API, after its /mcp load too: the same process).",
                warmup.as_secs_f64(),
                window.as_secs_f64()
            ),
            format!(
                "The MCP calls are stateless requests of protocol {MCP_VERSION}: no `initialize` and \
                 no session; each POST carries `MCP-Protocol-Version: {MCP_VERSION}`, `Mcp-Method: \
                 tools/call`, `Mcp-Name: echo`, `Accept: application/json, text/event-stream`, and \
                 the protocol version and client capabilities in `params._meta`. The client also \
                 reads chunked and `text/event-stream` answers (the call ends at its JSON-RPC \
                 response event); the notes say what each server sent."
            ),
            format!(
                "**flw serve**: `flw serve bench/peers/flw_tools.py --listen 127.0.0.1:0`, its \
                 defaults otherwise (isolated mode, one worker process per core: {cores} here, \
                 each running one call at a time); then \"shared ×1\", `flw serve --config \
                 flw.toml --listen 127.0.0.1:0` with the pool of (b)'s fastest echo variant: {}. \
                 Each is measured first on `/mcp`, then, in the same process, on its JSON API \
                 (`POST {FLW_JSON_PATH}` with the arguments `{{\"text\": ...}}` as the body, \
                 `{{\"result\": ...}}` back). **FastMCP**: `MCPServer` of the official MCP \
                 Python SDK (the class mcp 1.x called FastMCP), in `bench/.venv-mcp`, with the \
                 same tools as the stdio SDK peer (`bench/peers/{SDK_SCRIPT}` imports them from \
                 `mcp_sdk_server.py`), served as `MCPServer.run(\"streamable-http\")` serves it: \
                 `streamable_http_app(json_response=True, stateless_http=True)` under one uvicorn \
                 server (h11, asyncio) in one Python process, its usual deployment. Those are its \
                 fastest settings: a JSON body instead of an SSE stream, no session.",
                crate::report::variant_line(&SHARED_1),
            ),
            "What bounds it: in flw's default isolated mode each worker process runs one call at \
             a time, so the JSON API is bounded by its workers' round trips, as the isolated \
             variant of (b) is; shared ×1 lifts that. Its `/mcp` runs each stateless request \
             through rmcp's Streamable HTTP service (a service instance, its channels and a task \
             per request, and an event-stream response), its JSON API straight to the pool: \
             compare their \"main process\" rows. FastMCP is one Python process and uses one \
             core."
                .into(),
        ],
        rows: vec![
            Row::new("calls/s", "calls_per_s", Fmt::Int),
            Row::new("p50 (ms)", "p50_ms", Fmt::Millis),
            Row::new("p99 (ms)", "p99_ms", Fmt::Millis),
            Row::new("calls/s ÷ FastMCP's", "vs_sdk.calls_per_s", Fmt::Dec2),
            Row::new("p99 ÷ FastMCP's", "vs_sdk.p99", Fmt::Dec2),
            Row::new("cores used", "cores", Fmt::Dec2),
            Row::new("server CPU per call (µs)", "cpu_us_per_call", Fmt::Micros),
            Row::new(
                "of it, the main process (µs)",
                "main_cpu_us_per_call",
                Fmt::Micros,
            ),
            Row::new("driver cores", "driver_cores", Fmt::Dec2),
            Row::new(
                "main process RSS after the load (MB)",
                "rss_after",
                Fmt::Mb,
            ),
            Row::new("calls measured", "calls", Fmt::Int),
        ],
        results,
        ratios: vec![],
        notes,
    }
}
